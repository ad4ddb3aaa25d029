// Shared state, constants and small helpers of the web client (DOM, formatting, REST).
import { refreshTokens } from './session.js';

export const $ = (id) => document.getElementById(id);
export const STORE = {
  token: 'parley.token', user: 'parley.user_id', name: 'parley.username', device: 'parley.device_id',
  refresh: 'parley.refresh_token', expires: 'parley.expires_at',
};
export const REFRESH_AHEAD_MAX_S = 60;  // refresh the access token this long before it expires (at most)
export const TYPING_SHOW_MS = 3000;    // how long "X is typing…" stays after a typing event
export const TYPING_SEND_MS = 2000;    // at most one typing request per this interval
export const PAGE = 50;                // history page size
export const SEARCH_DELAY_MS = 250;    // directory searches wait for a pause in typing (the server limits them)
export const MUTE_END_SLACK_MS = 250; // redraw the composer this long after a timed mute's end
export const FILE_URL_KEEP_MS = 45000; // attachment URLs live 60 s on the server: re-ask a little before
export const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀', '✅', '🔥', '👏', '🤔'];
export const ROLE_RANK = { member: 0, moderator: 1, admin: 2, owner: 3 };
export const ROLES = Object.keys(ROLE_RANK);   // lowest first
// What each moderation action needs in a group or channel (docs/protocol.md "Who may do what").
export const NEEDS = { kick: 'moderator', mute: 'moderator', ban: 'admin', invite: 'admin', set_info: 'admin',
                       manage_roles: 'admin' };

export const state = {
  token: null, me: null, refreshTimer: null, live: false,   // live: hello answered on the socket
  ws: null, ridSeq: 0, pending: new Map(),   // rid -> {resolve, reject, op}
  limits: { max_text_chars: 16384, history_max: 200 },
  heartbeat: null, lastFrameAt: 0, backoff: 0, reconnectTimer: null, everConnected: false,
  convs: new Map(),      // conv id -> conv object (server fields + local: lastTs, last)
  msgs: new Map(),       // conv id -> Map(seq -> message)
  files: new Map(),      // attachment id -> file object (name, mime, size, thumbs) as far as known
  fileUrls: new Map(),   // attachment id -> {at, body: GET /v1/attachments/{id}}
  profiles: new Map(),   // user id -> profile object
  wantProfiles: new Set(), profileTimer: null,
  presence: new Map(),   // user id -> 'online' | 'offline'
  members: new Map(),    // conv id -> Map(user -> {role, ...}) for the conversation on screen
  sanctions: new Map(),  // conv id -> {mutes, bans: Map(user -> {until, by, ...})} on screen, if my role may lift them
  leftConvs: new Map(),  // conv id -> its name, for news about a conversation I am no longer in (a ban lifted)
  cursors: new Map(),    // conv id -> {read: Map(user -> seq), delivered: Map(user -> seq)}
  loaded: new Set(),     // conv ids whose newest history page has been fetched
  loading: new Set(),    // conv ids with that first page in flight (avoids double requests)
  noOlder: new Set(),    // conv ids where "load older" reached the start
  selected: null,
  drafts: new Map(),     // conv id -> composer text not sent yet
  replyTo: null,         // seq the next message answers
  editing: null,         // seq being edited in the composer
  muting: null,          // {user, name}: the member the mute dialog is about
  uploads: [],           // [{id, name, done}] files attached to the next message
  outbox: new Map(),     // cmid -> {conv, text, el, ...}: sends not yet acknowledged, retried after reconnect
  typers: new Map(),     // conv id -> Map(user -> timeout id)
  lastTypingSent: 0, readTimer: null, staff: false,
  capabilities: null,    // GET /v1/client/capabilities (features.calls: the server has a LiveKit)
  call: null,            // the call in #call-bar: {id, conv, media, initiator, mine: incoming|outgoing|in}
};

// ---------- small helpers ----------

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context (https or localhost); plain-http LAN pages still have this.
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;   // always textContent: user data is never HTML
  return e;
}

export function button(text, label, onClick, cls) {
  const b = el('button', cls || 'link', text);
  b.type = 'button';
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

// The connection line at the bottom; errors go beside what caused them (showError).
export function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text || '';
  s.className = kind || '';
}

export function showError(id, text) {
  const box = $(id);
  box.textContent = text || '';
  box.classList.toggle('shown', !!text);
}

// A person-readable sentence for a failed request: never an op name, never raw milliseconds.
export function explain(err) {
  if (!err) return 'Something went wrong.';
  if (err.code === 'rate_limited' || err.status === 429) {
    const s = Math.max(1, Math.ceil((err.retry_after_ms || (err.retry_after_s || 1) * 1000) / 1000));
    return `Too many attempts. Try again in ${s} s.`;
  }
  if (err.code === 'disconnected') return 'Not connected to the server; try again in a moment.';
  const known = {
    forbidden: 'You are not allowed to do that here.', not_found: 'Not found.',
    too_large: 'That is too large.', unavailable: 'The server is busy; try again shortly.',
    internal: 'The server hit a problem; try again.',
  };
  return err.message ? capitalise(err.message) : (known[err.code] || 'Something went wrong.');
}

export function capitalise(text) {
  const t = String(text).replace(/^[a-z_.]+: /, '');   // an "op: " prefix tells a person nothing
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

export function fmtTime(ts) {
  const d = new Date(ts);
  return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function fmtFull(ts) {
  const d = new Date(ts);
  return isNaN(d) ? '' : d.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' });
}

export function fmtDay(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

// When a mute or ban ends ("until 14:05", "until 8 Dec, 14:05"); null: until lifted.
export function fmtUntil(ts) {
  if (ts == null) return 'until lifted';
  const d = new Date(ts);
  return 'until ' + (d.toDateString() === new Date().toDateString() ? fmtTime(ts)
    : d.toLocaleString([], { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }));
}

// The end of a sentence about a mute or ban: " until 14:05", or nothing when it has no end.
export function untilSuffix(ts) { return ts == null ? '' : ` ${fmtUntil(ts)}`; }

// "a moderator", "an admin": a role in a sentence.
export function aRole(role) { return `${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role}`; }

export function fmtListTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? fmtTime(ts) : d.toLocaleDateString();
}

export function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function toMs(v) { return typeof v === 'number' ? v : (Date.parse(v) || 0); }

// The message pane sticks to the bottom while the reader is there.
export function nearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

export function scrollToBottom() { const s = $('scroller'); s.scrollTop = s.scrollHeight; }

// ---------- REST ----------

// One JSON (or raw body) request with the access token; a 401 refreshes once and retries.
export async function api(method, path, body, opts = {}) {
  const send = () => {
    const headers = { Authorization: `Bearer ${state.token}` };
    let payload = body;
    if (body !== undefined && !opts.raw) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
    if (opts.type) headers['Content-Type'] = opts.type;
    return fetch(path, { method, headers, body: payload });
  };
  let res;
  try {
    res = await send();
    if (res.status === 401 && !opts.noRetry) { await refreshTokens(); res = await send(); }
  } catch (e) {
    if (e && e.code) throw e;
    throw { code: 'disconnected', message: 'Cannot reach the server.' };
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const error = (data && data.error) || {};
    const fields = error.fields && error.fields.map((f) => f.message).join('; ');
    throw { status: res.status, code: error.code, message: fields || error.message,
            retry_after_s: Number(res.headers.get('Retry-After')) || 0 };
  }
  return data;
}
