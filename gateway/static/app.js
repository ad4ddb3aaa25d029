// Parley web client: plain JS, no build step, nothing loaded from the internet.
// Wire contract: docs/protocol.md (REST /v1/*, WebSocket /v1/ws, JSON frames). Why one
// dependency-free file: docs/adr/0005-web-client.md.
'use strict';

const $ = (id) => document.getElementById(id);
const STORE = {
  token: 'parley.token', user: 'parley.user_id', name: 'parley.username', device: 'parley.device_id',
  refresh: 'parley.refresh_token', expires: 'parley.expires_at',
};
const REFRESH_AHEAD_MAX_S = 60;  // refresh the access token this long before it expires (at most)
const TYPING_SHOW_MS = 3000;    // how long "X is typing…" stays after a typing event
const TYPING_SEND_MS = 2000;    // at most one typing request per this interval
const PAGE = 50;                // history page size
const SEARCH_DELAY_MS = 250;    // directory searches wait for a pause in typing (the server limits them)
const FILE_URL_KEEP_MS = 45000; // attachment URLs live 60 s on the server: re-ask a little before
const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀', '✅', '🔥', '👏', '🤔'];
const ROLE_RANK = { member: 0, moderator: 1, admin: 2, owner: 3 };
// What each moderation action needs in a group or channel (docs/protocol.md "Who may do what").
const NEEDS = { kick: 'moderator', mute: 'moderator', ban: 'admin', invite: 'admin', set_info: 'admin' };

const state = {
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
  cursors: new Map(),    // conv id -> {read: Map(user -> seq), delivered: Map(user -> seq)}
  loaded: new Set(),     // conv ids whose newest history page has been fetched
  loading: new Set(),    // conv ids with that first page in flight (avoids double requests)
  noOlder: new Set(),    // conv ids where "load older" reached the start
  selected: null,
  drafts: new Map(),     // conv id -> composer text not sent yet
  replyTo: null,         // seq the next message answers
  editing: null,         // seq being edited in the composer
  uploads: [],           // [{id, name, done}] files attached to the next message
  outbox: new Map(),     // cmid -> {conv, text, el, ...}: sends not yet acknowledged, retried after reconnect
  typers: new Map(),     // conv id -> Map(user -> timeout id)
  lastTypingSent: 0, readTimer: null, staff: false, capabilities: null,
};

// ---------- small helpers ----------

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context (https or localhost); plain-http LAN pages still have this.
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;   // always textContent: user data is never HTML
  return e;
}

function button(text, label, onClick, cls) {
  const b = el('button', cls || 'link', text);
  b.type = 'button';
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

// The connection line at the bottom; errors go beside what caused them (showError).
function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text || '';
  s.className = kind || '';
}

function showError(id, text) {
  const box = $(id);
  box.textContent = text || '';
  box.classList.toggle('shown', !!text);
}

// A person-readable sentence for a failed request: never an op name, never raw milliseconds.
function explain(err) {
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

function capitalise(text) {
  const t = String(text).replace(/^[a-z_.]+: /, '');   // an "op: " prefix tells a person nothing
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

function fmtTime(ts) {
  const d = new Date(ts);
  return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function fmtFull(ts) {
  const d = new Date(ts);
  return isNaN(d) ? '' : d.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' });
}

function fmtDay(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

function fmtListTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? fmtTime(ts) : d.toLocaleDateString();
}

function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function toMs(v) { return typeof v === 'number' ? v : (Date.parse(v) || 0); }

// ---------- REST ----------

// One JSON (or raw body) request with the access token; a 401 refreshes once and retries.
async function api(method, path, body, opts = {}) {
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

// ---------- people ----------

function profile(id) { return state.profiles.get(id); }

function displayName(id) {
  if (!id) return '';
  const p = profile(id);
  if (!p) { wantProfile(id); return 'someone'; }
  return p.display_name || p.username || id;
}

function learnProfiles(list) {
  let changed = false;
  for (const p of Array.isArray(list) ? list : Object.values(list || {})) {
    if (p && p.id) { state.profiles.set(p.id, p); state.wantProfiles.delete(p.id); changed = true; }
  }
  return changed;
}

// Unknown people are fetched in one batch (GET /v1/users?ids=) after the current render.
function wantProfile(id) {
  if (state.profiles.has(id) || state.wantProfiles.has(id)) return;
  state.wantProfiles.add(id);
  clearTimeout(state.profileTimer);
  state.profileTimer = setTimeout(fetchProfiles, 30);
}

async function fetchProfiles() {
  const ids = [...state.wantProfiles].slice(0, 100);
  if (!ids.length || !state.token) return;
  try {
    const res = await api('GET', `/v1/users?ids=${ids.map(encodeURIComponent).join(',')}`);
    learnProfiles(res.profiles);
  } catch { /* shown as "someone" until the next try */ }
  for (const id of ids) if (!state.profiles.has(id)) state.profiles.set(id, { id, username: id });
  state.wantProfiles.clear();
  renderAll();
}

function avatar(id, size) {
  const p = profile(id);
  const name = p ? (p.display_name || p.username || '?') : '?';
  const box = el('span', `avatar ${size || ''}`);
  box.setAttribute('aria-hidden', 'true');
  if (p && p.avatar) {
    const img = el('img');
    img.alt = '';
    img.src = `/v1/avatars/${encodeURIComponent(p.avatar)}/96`;
    box.append(img);
  } else {
    box.textContent = name.trim().charAt(0).toUpperCase() || '?';
    box.dataset.hue = String([...(id || '')].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 0));
    box.style.setProperty('--hue', box.dataset.hue);
  }
  const status = state.presence.get(id);
  if (status) {
    const dot = el('span', `presence ${status}`);
    box.append(dot);
  }
  return box;
}

// A directory search box: typing shows matching people in a listbox; pick() gets the profile.
function peoplePicker(input, list, errorId, pick) {
  let timer = null, results = [], active = -1;
  const close = () => { list.replaceChildren(); results = []; active = -1; input.setAttribute('aria-expanded', 'false'); };
  const render = () => {
    list.replaceChildren(...results.map((p, i) => {
      const li = el('li', 'person' + (i === active ? ' active' : ''));
      li.id = `${list.id}-${i}`;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === active));
      li.dataset.userId = p.id;
      const names = el('span', 'person-names');
      names.append(el('span', 'person-name', p.display_name || p.username), el('span', 'hint', `@${p.username}`));
      li.append(avatar(p.id), names);
      li.addEventListener('mousedown', (e) => { e.preventDefault(); choose(i); });
      return li;
    }));
    input.setAttribute('aria-expanded', String(results.length > 0));
    if (active >= 0) input.setAttribute('aria-activedescendant', `${list.id}-${active}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const choose = (i) => { const p = results[i]; if (!p) return; close(); pick(p); };
  const search = async () => {
    const q = input.value.trim().replace(/^@/, '');
    if (q.length < 2) return close();
    try {
      const res = await api('GET', `/v1/users?q=${encodeURIComponent(q)}&limit=8`);
      if (input.value.trim().replace(/^@/, '') !== q) return;
      learnProfiles(res.users);
      results = res.users;
      active = results.length ? 0 : -1;
      showError(errorId, results.length ? '' : `Nobody found for “${q}”.`);
      render();
    } catch (err) { showError(errorId, explain(err)); }
  };
  input.addEventListener('input', () => { showError(errorId, ''); clearTimeout(timer); timer = setTimeout(search, SEARCH_DELAY_MS); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' && results.length) { e.preventDefault(); active = (active + 1) % results.length; render(); }
    else if (e.key === 'ArrowUp' && results.length) { e.preventDefault(); active = (active - 1 + results.length) % results.length; render(); }
    else if (e.key === 'Enter' && active >= 0) { e.preventDefault(); choose(active); }
    else if (e.key === 'Escape') close();
  });
  input.addEventListener('blur', () => setTimeout(close, 150));
  // For a form submitted without picking: the exact username, or the only match.
  return async () => {
    if (results.length === 1) return results[0];
    const q = input.value.trim().replace(/^@/, '').toLowerCase();
    if (q.length < 2) return null;
    try {
      const res = await api('GET', `/v1/users?q=${encodeURIComponent(q)}&limit=20`);
      learnProfiles(res.users);
      return res.users.find((p) => p.username === q || (p.display_name || '').toLowerCase() === q)
        || (res.users.length === 1 ? res.users[0] : null);
    } catch (err) { showError(errorId, explain(err)); return undefined; }
  };
}

// ---------- REST auth ----------

async function authenticate(kind) {
  const username = $('username').value.trim().toLowerCase();
  const password = $('password').value;
  showError('auth-error', '');
  if (!username || !password) {
    showError('auth-error', 'Enter a username and a password.');
    return $(username ? 'password' : 'username').focus();
  }
  setStatus(kind === 'register' ? 'Registering…' : 'Logging in…');
  let res, body = null;
  try {
    res = await fetch(`/v1/auth/${kind}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    body = await res.json().catch(() => null);
  } catch (e) {
    setStatus('');
    return showError('auth-error', 'Cannot reach the server. Check your connection and try again.');
  }
  setStatus('');
  if (!res.ok || !body || !body.token) {
    const error = (body && body.error) || {};
    let msg;
    if (res.status === 429) msg = explain({ status: 429, retry_after_s: Number(res.headers.get('Retry-After')) || 1 });
    else if (kind === 'login' && res.status === 401) msg = 'Wrong username or password. New here? Press Register to create this account.';
    else if (kind === 'register' && res.status === 409) msg = 'That username is taken. If it is yours, press Log in.';
    else msg = explain({ message: (error.fields && error.fields.map((f) => f.message).join('; ')) || error.message });
    showError('auth-error', msg);
    return $('password').focus();
  }
  keepTokens(body);
  localStorage.setItem(STORE.user, body.user_id);
  localStorage.setItem(STORE.name, username);
  $('password').value = '';
  startSession();
}

// ---------- keeping the login fresh ----------
// The access token lives minutes; the refresh token gets the next pair and is spent doing so.
// Tabs share both through localStorage, and refresh one at a time (Web Locks where the page has
// them): a refresh token spent twice is taken for a stolen one, and ends the login.

function keepTokens(pair) {
  localStorage.setItem(STORE.token, pair.token);
  localStorage.setItem(STORE.refresh, pair.refresh_token);
  localStorage.setItem(STORE.expires, String(pair.expires_at));
  state.token = pair.token;
  scheduleRefresh();
}

function expiresAt() { return Number(localStorage.getItem(STORE.expires)) || 0; }

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  const left = expiresAt() - Date.now() / 1000;
  const ahead = Math.min(REFRESH_AHEAD_MAX_S, left / 4);
  state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), Math.max(0, (left - ahead) * 1000));
}

function oneTabAtATime(fn) {
  return navigator.locks ? navigator.locks.request('parley.refresh', fn) : fn();
}

// Resolves once this tab holds a fresh token (and the live socket stands on it); rejects with
// {code:'unauthorized'} when the login is over, or another error to try again later.
function refreshTokens() {
  return oneTabAtATime(async () => {
    const known = state.token;
    if (localStorage.getItem(STORE.token) !== known) {
      state.token = localStorage.getItem(STORE.token);   // another tab refreshed meanwhile
    } else {
      const refresh_token = localStorage.getItem(STORE.refresh);
      if (!refresh_token) throw { code: 'unauthorized', message: 'no refresh token' };
      let res;
      try {
        res = await fetch('/v1/auth/refresh', {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token }),
        });
      } catch (e) {
        state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), 5000);
        throw { code: 'disconnected', message: e.message };
      }
      const body = await res.json().catch(() => null);
      if (!res.ok || !body || !body.token) throw { code: res.status === 401 ? 'unauthorized' : 'unavailable' };
      keepTokens(body);
    }
    scheduleRefresh();
    if (state.live) await request('auth', { token: state.token }).catch(() => {});
  });
}

// Tabs of one browser share one login (localStorage). Another tab that logged out, or signed in
// as someone else, takes this tab along at once and says so, instead of swapping the account
// silently on the next reload (bug 1). Another tab that refreshed: this one's socket moves onto
// the new token too.
function onStorage(e) {
  if (e.key === STORE.user && state.me && e.newValue !== state.me) {
    const name = localStorage.getItem(STORE.name);
    if (!e.newValue) return closeSession('You logged out in another tab.');
    closeSession();
    startSession();
    return setStatus(`This browser is now signed in as ${name} (from another tab). For two accounts at once, use a private window or another browser profile.`);
  }
  if (e.key !== STORE.token || !e.newValue || e.newValue === state.token || !state.me) return;
  if (localStorage.getItem(STORE.user) !== state.me) return;   // another account: the user key's event follows
  state.token = e.newValue;
  scheduleRefresh();
  if (state.live) request('auth', { token: state.token }).catch(() => {});
}

function startSession() {
  state.token = localStorage.getItem(STORE.token);
  state.me = localStorage.getItem(STORE.user);
  if (!state.token) return showView('auth');
  loadDrafts();
  $('enable-notifications').hidden = !('Notification' in window) || Notification.permission !== 'default';
  scheduleRefresh();
  $('my-username').textContent = localStorage.getItem(STORE.name) || '';
  $('my-user-id').textContent = state.me || '';
  showView('chat');
  renderMe();
  connect();
  api('GET', '/v1/me/profile').then((p) => { learnProfiles([p]); renderMe(); }, () => {});
  state.staff = tokenRoles().some((r) => r === 'admin' || r === 'moderator');
  $('staff-open').hidden = !state.staff;
}

// The token's roles claim (instance staff); only used to show the moderation page's link.
function tokenRoles() {
  try {
    const claims = JSON.parse(atob(state.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return Array.isArray(claims.roles) ? claims.roles : [];
  } catch { return []; }
}

// The logout button: this login ends on the server too (its other tabs' sockets close 4003).
function signOut() {
  const token = state.token;
  if (token) fetch('/v1/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  logout();
}

function logout(message) {
  if (state.me) localStorage.removeItem(draftsKey());   // what was typed is not left for the next user
  for (const k of [STORE.token, STORE.user, STORE.name, STORE.refresh, STORE.expires]) localStorage.removeItem(k);
  closeSession(message);
}

// This tab's side of a logout: the socket, the timers and what the page holds (not the storage).
function closeSession(message) {
  clearTimeout(state.refreshTimer);
  const ws = state.ws;
  state.ws = null;                 // cleared first so onclose does not schedule a reconnect
  if (ws) ws.close(1000);
  clearTimeout(state.reconnectTimer);
  stopHeartbeat();
  state.pending.clear();
  Object.assign(state, { token: null, me: null, selected: null, everConnected: false, backoff: 0, live: false });
  for (const k of ['convs', 'msgs', 'loaded', 'loading', 'noOlder', 'outbox', 'typers', 'drafts', 'profiles',
    'presence', 'members', 'cursors', 'files', 'fileUrls']) state[k].clear();
  $('conv-list').replaceChildren();
  selectConv(null);
  showView('auth');
  setStatus('');
  showError('auth-error', message || '');
  document.title = 'Parley';
}

function showView(name) {
  $('auth-view').hidden = name !== 'auth';
  $('chat-view').hidden = name !== 'chat';
  $('staff-view').hidden = name !== 'staff';
}

// ---------- WebSocket session ----------

function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`);
  state.ws = ws;
  setStatus(state.everConnected ? 'Reconnecting…' : 'Connecting…');
  ws.onopen = () => onOpen(ws);
  ws.onmessage = (ev) => { if (ws === state.ws) onFrame(ev.data); };
  ws.onclose = (ev) => onClose(ws, ev);
}

async function onOpen(ws) {
  let hello;
  try {
    // Back from sleep with an expired token: the next pair first (hello would be refused).
    if (expiresAt() - Date.now() / 1000 < 5) await refreshTokens();
    hello = await request('hello', { token: state.token, device_id: deviceId() });
  } catch (err) {
    if (err.code === 'unauthorized') return logout('Your session has expired, please log in again.');
    if (ws === state.ws) ws.close();   // any other failure: start over via onClose's backoff
    return;
  }
  if (ws !== state.ws) return;
  state.live = true;
  state.backoff = 0;
  if (hello.limits) Object.assign(state.limits, hello.limits);
  startHeartbeat(hello.heartbeat_s || 30);
  setStatus('Connected');
  const reconnect = state.everConnected;
  state.everConnected = true;
  await refreshConvs();
  askPresence();
  if (reconnect) await resync();
  if (state.selected && !state.loaded.has(state.selected)) loadHistory(state.selected);
  flushOutbox();
}

function deviceId() {
  let id = localStorage.getItem(STORE.device);
  if (!id) localStorage.setItem(STORE.device, (id = newId()));
  return id;
}

function onClose(ws, ev) {
  if (ws !== state.ws) return;     // an old socket already handled, or a deliberate logout
  state.ws = null;
  state.live = false;
  stopHeartbeat();
  for (const p of state.pending.values()) p.reject({ code: 'disconnected', message: 'connection lost' });
  state.pending.clear();
  if (ev.code === 4003) {
    // The token ran out (a background tab's timers run late) or the login was ended: a refresh
    // tells which.
    refreshTokens().then(() => connect(), (err) => {
      if (err.code === 'unauthorized') logout('Your session is no longer valid, please log in again.');
      else state.reconnectTimer = setTimeout(() => { if (state.token) connect(); }, 5000);
    });
    return;
  }
  // Exponential backoff with jitter so a restarting server is not stampeded by every client.
  const delay = Math.min(30000, 1000 * 2 ** state.backoff) * (0.5 + Math.random() / 2);
  state.backoff = Math.min(state.backoff + 1, 5);
  const why = ev.code === 4008 ? 'Disconnected by server policy' : 'Connection lost';
  setStatus(`${why}; reconnecting in ${Math.round(delay / 1000)} s…`, 'warn');
  state.reconnectTimer = setTimeout(() => { if (state.token) connect(); }, delay);
}

function startHeartbeat(seconds) {
  stopHeartbeat();
  state.lastFrameAt = Date.now();
  state.heartbeat = setInterval(() => {
    // A silent socket (no frame, not even a ping reply, for 2 heartbeats) is dead. Its close event
    // may take minutes to arrive on a broken network, so handle the loss now.
    const ws = state.ws;
    if (ws && Date.now() - state.lastFrameAt > 2 * seconds * 1000 + 5000) {
      onClose(ws, { code: 0 });
      return ws.close();
    }
    request('ping', {}).catch(() => {});
  }, seconds * 1000);
}

function stopHeartbeat() { clearInterval(state.heartbeat); state.heartbeat = null; }

// Sends one request and resolves with the ok frame, or rejects with the error frame.
function request(op, fields) {
  return new Promise((resolve, reject) => {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return reject({ code: 'disconnected', message: 'not connected' });
    const rid = `r${++state.ridSeq}`;
    state.pending.set(rid, { resolve, reject, op });
    ws.send(JSON.stringify({ op, rid, ...fields }));
  });
}

function onFrame(data) {
  state.lastFrameAt = Date.now();
  let f;
  try { f = JSON.parse(data); } catch { return; }
  if (f.op === 'event') return handleEvent(f);
  const p = f.rid != null && state.pending.get(f.rid);
  if (!p) return;    // an error without rid answers a malformed frame: nothing a person can act on
  state.pending.delete(f.rid);
  // Each caller shows an error beside what caused it (showError), so nothing goes to the status line.
  if (f.op === 'ok') p.resolve(f); else p.reject(f);
}

// ---------- conversations ----------

async function refreshConvs() {
  const res = await request('conv.list', {}).catch(() => null);
  if (res) {
    learnProfiles(res.profiles);
    for (const c of res.convs || []) upsertConv(c);
  }
  renderConvList();
}

// Merges a conv object from the server; keeps local-only fields. The list is ordered by the
// newest message (`last_message.ts`), by `created_at` only while a conversation has none.
function upsertConv(c) {
  const old = state.convs.get(c.id) || {};
  const merged = { ...old, ...c };
  if ('last_message' in c) merged.last = c.last_message;
  merged.lastTs = Math.max(old.lastTs || 0, merged.last ? toMs(merged.last.ts) : toMs(c.created_at));
  if (c.peer) wantProfile(c.peer);
  state.convs.set(c.id, merged);
}

// Asks who of the people on screen is online (presence events keep it current afterwards).
function askPresence() {
  const users = new Set();
  for (const c of state.convs.values()) if (c.peer) users.add(c.peer);
  for (const m of state.members.values()) for (const u of m.keys()) if (u !== state.me) users.add(u);
  if (!users.size) return;
  request('presence', { users: [...users].slice(0, 200) }).then((res) => {
    for (const p of res.presence || []) state.presence.set(p.user, p.status);
    renderAll();
  }, () => {});
}

// After a reconnect: ask for everything after the newest seq we hold in each conversation.
async function resync() {
  const since = {};
  for (const [id, c] of state.convs) since[id] = state.loaded.has(id) ? maxSeq(id) : (c.last_seq || 0);
  const res = await request('sync', { since }).catch(() => null);
  if (!res) return;
  for (const s of res.convs || []) {
    const c = state.convs.get(s.conv);
    if (!c) { await refreshConvs(); continue; }    // a conversation we have not heard of yet
    Object.assign(c, { last_seq: s.last_seq, read_seq: s.read_seq, unread: s.unread });
    (s.messages || []).forEach(noteLast);
    if (state.loaded.has(s.conv)) {
      (s.messages || []).forEach(addMessage);
      if (s.more) await catchUp(s.conv, maxSeq(s.conv));
    }
  }
  renderConvList();
  if (state.selected) { renderMessages(); markRead(state.selected); }
}

// Fills a gap after the newest held message; a gap too large for one page is dropped so the
// conversation simply reloads its newest page (older ones stay reachable via "load older").
async function catchUp(convId, after) {
  const limit = state.limits.history_max || 200;
  const res = await request('history', { conv: convId, after, limit }).catch(() => null);
  if (!res) return;
  if ((res.messages || []).length >= limit) return resetConv(convId);
  res.messages.forEach(addMessage);
  if (convId === state.selected) renderMessages();
}

function resetConv(convId) {
  state.msgs.delete(convId);
  state.loaded.delete(convId);
  state.noOlder.delete(convId);
  if (state.selected === convId) { $('messages').replaceChildren(); loadHistory(convId); }
}

function convLabel(c) {
  if (c.title) return c.title;
  if (c.kind === 'direct') return c.peer ? displayName(c.peer) : 'Direct chat (they left)';
  return c.kind === 'channel' ? 'Untitled channel' : 'Untitled group';
}

function convPreview(c) {
  const m = c.last;
  if (!m) return 'No messages yet';
  const who = m.sender === state.me ? 'You' : (c.kind === 'direct' ? '' : displayName(m.sender));
  const text = m.deleted ? 'Message deleted' : (m.preview || (m.attachments ? `${m.attachments} attachment${m.attachments > 1 ? 's' : ''}` : ''));
  return who ? `${who}: ${text}` : text;
}

// Keeps the list entry's preview in step with live messages (conv.list gave the first one).
function noteLast(m) {
  const c = state.convs.get(m.conv);
  if (!c || (c.last && c.last.seq > m.seq)) return;
  const files = (m.attachments || []).length;
  c.last = { seq: m.seq, ts: m.ts, sender: m.sender, deleted: !!m.deleted, attachments: files,
             preview: m.deleted ? null : ((m.text || '').replace(/\s+/g, ' ').trim().slice(0, 140) || null) };
  c.lastTs = Math.max(c.lastTs || 0, m.ts || 0);
}

function renderConvList() {
  const list = $('conv-list');
  const convs = [...state.convs.values()].sort((a, b) => (b.lastTs || 0) - (a.lastTs || 0));
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#conv-list .conv');
  const focusId = focused && focused.dataset.convId;
  list.replaceChildren(...convs.map((c) => {
    const selected = c.id === state.selected;
    const li = el('li', 'conv' + (selected ? ' selected' : ''));
    li.id = `conv-${c.id}`;
    li.dataset.convId = c.id;
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', String(selected));
    li.tabIndex = -1;
    const body = el('div', 'conv-body');
    const top = el('div', 'conv-top');
    top.append(el('span', 'conv-title', convLabel(c)), el('time', 'conv-time', fmtListTime(c.last && c.last.ts)));
    const bottom = el('div', 'conv-bottom');
    bottom.append(el('span', 'conv-preview', convPreview(c)));
    if (c.unread > 0) {
      const badge = el('span', 'unread', String(c.unread));
      badge.setAttribute('aria-label', `${c.unread} unread`);
      bottom.append(badge);
    }
    body.append(top, bottom);
    li.append(c.kind === 'direct' && c.peer ? avatar(c.peer) : groupAvatar(c), body);
    return li;
  }));
  const active = state.selected && $(`conv-${state.selected}`);
  if (active) list.setAttribute('aria-activedescendant', active.id); else list.removeAttribute('aria-activedescendant');
  if (focusId && $(`conv-${focusId}`)) $(`conv-${focusId}`).focus();
  renderHeader();
  renderTitle();
}

function groupAvatar(c) {
  const box = el('span', 'avatar group', (convLabel(c).trim().charAt(0) || '#').toUpperCase());
  box.setAttribute('aria-hidden', 'true');
  return box;
}

// The tab title counts unread messages, so a background tab shows there is news.
function renderTitle() {
  let unread = 0;
  for (const c of state.convs.values()) unread += c.unread || 0;
  document.title = unread ? `(${unread}) Parley` : 'Parley';
}

function renderHeader() {
  const c = state.selected && state.convs.get(state.selected);
  $('conv-title').textContent = c ? convLabel(c) : (state.selected ? 'Conversation' : 'No conversation selected');
  const slot = $('conv-avatar');
  slot.replaceChildren(...(c ? [c.kind === 'direct' && c.peer ? avatar(c.peer) : groupAvatar(c)] : []));
  let sub = '';
  if (c && c.kind === 'direct' && c.peer) {
    const p = profile(c.peer);
    const online = state.presence.get(c.peer);
    sub = [p && `@${p.username}`, online && (online === 'online' ? 'online' : 'offline'), p && p.status_text].filter(Boolean).join(' · ');
  } else if (c) {
    const m = state.members.get(c.id);
    sub = m ? `${m.size} member${m.size === 1 ? '' : 's'}` : (c.kind || '');
  }
  $('conv-subtitle').textContent = sub;
  $('toggle-members').hidden = !c;
}

function renderMe() {
  const p = profile(state.me);
  $('my-name').textContent = p ? (p.display_name || p.username) : (localStorage.getItem(STORE.name) || '');
  $('my-avatar').replaceChildren(avatar(state.me));
}

function renderAll() {
  renderMe();
  renderConvList();
  if (state.selected) { renderMessages(); renderMembers(); }
  renderTyping();
}

// Drafts outlive a reload: kept per account in localStorage (only text; files are not kept).
function draftsKey() { return `parley.drafts.${state.me}`; }

function loadDrafts() {
  try { state.drafts = new Map(Object.entries(JSON.parse(localStorage.getItem(draftsKey()) || '{}'))); }
  catch { state.drafts = new Map(); }
}

function keepDraft(convId, text) {
  if (text.trim()) state.drafts.set(convId, text); else state.drafts.delete(convId);
  localStorage.setItem(draftsKey(), JSON.stringify(Object.fromEntries(state.drafts)));
}

function selectConv(convId) {
  const before = state.selected;
  if (before && before !== convId) keepDraft(before, $('composer').value);
  state.selected = convId;
  state.replyTo = null;
  state.editing = null;
  state.uploads = [];
  renderUploads();
  renderReplyBar();
  showError('composer-error', '');
  $('chat-view').classList.toggle('conv-open', !!convId);
  $('messages').replaceChildren();
  $('pending').replaceChildren();
  $('empty-hint').hidden = !!convId;
  // Channel subscribers read only: their composer says so instead of failing on send.
  const c = convId && state.convs.get(convId);
  const readOnly = !!c && c.kind === 'channel' && (ROLE_RANK[myRole(convId)] || 0) < ROLE_RANK.admin;
  $('composer').disabled = $('send').disabled = $('attach').disabled = !convId || readOnly;
  $('composer').placeholder = readOnly ? 'Only admins post in this channel' : 'Write a message';
  $('composer').value = (convId && state.drafts.get(convId)) || '';
  renderTyping();
  renderConvList();
  if (!convId) { $('members-panel').hidden = true; return renderOlderButton(); }
  renderMessages();
  for (const o of state.outbox.values()) if (o.conv === convId) $('pending').append(o.el);
  renderOlderButton();
  scrollToBottom();
  if (state.loaded.has(convId)) markRead(convId); else loadHistory(convId);
  loadMembers(convId);
}

// A conversation's members with their profiles (for names, roles, presence and the panel).
async function loadMembers(convId) {
  const members = new Map();
  let after;
  try {
    for (;;) {
      const res = await request('conv.members', { conv: convId, ...(after ? { after } : {}) });
      learnProfiles(res.profiles);
      for (const m of res.members) members.set(m.user, m);
      if (!res.more || !res.members.length) break;
      after = res.members[res.members.length - 1].user;
    }
  } catch { return; }
  state.members.clear();   // only the conversation on screen is kept
  state.members.set(convId, members);
  if (state.selected === convId) { renderAll(); askPresence(); }
}

function myRole(convId) {
  const c = state.convs.get(convId);
  return (c && c.role) || 'member';
}

function may(convId, action, target) {
  const c = state.convs.get(convId);
  if (!c || c.kind === 'direct') return false;
  const mine = ROLE_RANK[myRole(convId)] || 0;
  if (mine < ROLE_RANK[NEEDS[action]]) return false;
  return target === undefined || mine > (ROLE_RANK[target] || 0);
}

function renderMembers() {
  const convId = state.selected;
  const c = state.convs.get(convId);
  const members = state.members.get(convId) || new Map();
  $('rename-form').hidden = !c || !may(convId, 'set_info');
  $('invite-form').hidden = !c || !may(convId, 'invite');
  $('leave-conv').hidden = !c || c.kind === 'direct';
  if (c && document.activeElement !== $('rename-title')) $('rename-title').value = c.title || '';
  const rows = [...members.values()].sort((a, b) => (ROLE_RANK[b.role] - ROLE_RANK[a.role]) || displayName(a.user).localeCompare(displayName(b.user)));
  $('member-list').replaceChildren(...rows.map((m) => {
    const li = el('li', 'member');
    li.dataset.userId = m.user;
    const names = el('span', 'person-names');
    names.append(el('span', 'person-name', displayName(m.user) + (m.user === state.me ? ' (you)' : '')),
      el('span', 'hint', [m.role !== 'member' ? m.role : '', state.presence.get(m.user) || ''].filter(Boolean).join(' · ')));
    li.append(avatar(m.user), names);
    if (m.user !== state.me) {
      const acts = el('span', 'member-actions');
      const name = displayName(m.user);
      if (may(convId, 'mute', m.role)) acts.append(button('Mute', `Mute ${name}`, () => moderate('member.mute', m.user, `${name} is muted.`)));
      if (may(convId, 'kick', m.role)) acts.append(button('Remove', `Remove ${name}`, () => confirm(`Remove ${name} from the conversation?`) && moderate('member.kick', m.user, `${name} was removed.`)));
      if (may(convId, 'ban', m.role)) acts.append(button('Ban', `Ban ${name}`, () => confirm(`Ban ${name} from the conversation?`) && moderate('member.ban', m.user, `${name} is banned.`)));
      li.append(acts);
    }
    return li;
  }));
}

async function moderate(op, user, done) {
  const convId = state.selected;
  showError('members-error', '');
  try {
    await request(op, { conv: convId, user });
    setStatus(done);
    loadMembers(convId);
  } catch (err) { showError('members-error', explain(err)); }
}

async function createConv(fields, form, errorId) {
  try {
    const res = await request('conv.create', fields);
    upsertConv(res.conv);
    form.reset();
    form.hidden = true;
    $('group-chosen').replaceChildren();
    selectConv(res.conv.id);
    $('composer').focus();
  } catch (err) { showError(errorId, explain(err)); }
}

// ---------- messages ----------

function maxSeq(convId) {
  let max = 0;
  for (const seq of (state.msgs.get(convId) || new Map()).keys()) max = Math.max(max, seq);
  return max;
}

function sortedMessages(convId) {
  return [...(state.msgs.get(convId) || new Map()).values()].sort((a, b) => a.seq - b.seq);
}

// Stores a message (new, edited or deleted: a later copy replaces an earlier one).
// Returns true when the (conv, seq) pair was new.
function addMessage(m) {
  if (!state.msgs.has(m.conv)) state.msgs.set(m.conv, new Map());
  const map = state.msgs.get(m.conv);
  const isNew = !map.has(m.seq);
  map.set(m.seq, m);
  const c = state.convs.get(m.conv);
  if (c) {
    c.last_seq = Math.max(c.last_seq || 0, m.seq);
    noteLast(m);
    if (m.sender === state.me) c.read_seq = Math.max(c.read_seq || 0, m.seq);   // the server does the same
  }
  if (m.sender === state.me && m.cmid) dropPending(m.cmid);
  if (m.sender) wantProfile(m.sender);
  // Sending moves the sender's read cursor on the server, with no `read` event for it.
  if (m.sender && m.sender !== state.me) {
    const read = cursorsOf(m.conv).read;
    read.set(m.sender, Math.max(read.get(m.sender) || 0, m.seq));
  }
  return isNew;
}

function cursorsOf(convId) {
  if (!state.cursors.has(convId)) state.cursors.set(convId, { read: new Map(), delivered: new Map() });
  return state.cursors.get(convId);
}

// The conversation is drawn again on a change (simple, and cheap for a few hundred messages),
// but only nodes that differ replace what is on screen: the live region announces just those,
// focus stays where it was, and loaded thumbnails are not fetched again.
function renderMessages() {
  const convId = state.selected;
  const box = $('messages');
  const stick = nearBottom();
  const nodes = [];
  let day = '';
  let prev = null;
  const msgs = sortedMessages(convId);
  const lastMine = [...msgs].reverse().find((m) => m.sender === state.me && !m.deleted);
  for (const m of msgs) {
    const d = new Date(m.ts).toDateString();
    if (d !== day) {
      day = d;
      const divider = el('div', 'day-divider');
      divider.dataset.key = `day-${d}`;
      divider.setAttribute('role', 'separator');
      divider.append(el('span', null, fmtDay(m.ts)));
      nodes.push(divider);
      prev = null;
    }
    const grouped = prev && prev.sender === m.sender && m.ts - prev.ts < 5 * 60000;
    nodes.push(renderMessage(m, grouped, m === lastMine));
    prev = m;
  }
  reconcile(box, nodes);
  if (stick) scrollToBottom();
}

// Makes box's children equal to nodes (each with a unique data-key), keeping the present node of
// a key when it was drawn from the same data (data-sig, taken before any image loaded).
function reconcile(box, nodes) {
  const old = new Map([...box.children].map((n) => [n.dataset.key, n]));
  let cursor = box.firstElementChild;
  for (const n of nodes) {
    const sig = n.outerHTML;
    const prev = old.get(n.dataset.key);
    old.delete(n.dataset.key);
    let keep = n;
    if (prev && prev.dataset.sig === sig) keep = prev;
    else if (prev) { if (prev === cursor) cursor = cursor.nextElementSibling; prev.remove(); }
    if (keep === n) n.dataset.sig = sig;
    if (keep === cursor) cursor = cursor.nextElementSibling;
    else box.insertBefore(keep, cursor);
  }
  for (const n of old.values()) n.remove();
}

function renderMessage(m, grouped, showReceipt) {
  const mine = m.sender === state.me;
  const div = el('article', 'msg' + (mine ? ' mine' : '') + (m.deleted ? ' deleted' : '') + (grouped ? ' grouped' : ''));
  div.dataset.seq = m.seq;
  div.dataset.key = `msg-${m.seq}`;
  div.dataset.sender = m.sender;
  div.tabIndex = -1;
  const name = displayName(m.sender);
  div.setAttribute('aria-label', `${mine ? 'You' : name}, ${fmtTime(m.ts)}`);
  const side = el('div', 'msg-side');
  if (!grouped) side.append(avatar(m.sender, 'small'));
  const main = el('div', 'msg-main');
  const meta = el('div', 'msg-meta');
  const time = el('time', 'msg-time', fmtTime(m.ts));
  time.dateTime = new Date(m.ts).toISOString();
  time.title = fmtFull(m.ts);
  meta.append(el('span', 'msg-sender', mine ? 'You' : name), time);
  if (m.edited_at && !m.deleted) meta.append(el('span', 'msg-edited', '(edited)'));
  main.append(meta);
  if (m.reply_to && !m.deleted) main.append(renderQuote(m.conv, m.reply_to));
  const text = el('div', 'msg-text');
  if (m.deleted) text.textContent = 'Message deleted';
  else appendWithMentions(text, m.text || '', m.mentions || []);
  main.append(text);
  if (!m.deleted && (m.attachments || []).length) main.append(renderFiles(m));
  const reactions = Object.entries(m.reactions || {}).filter(([, users]) => users.length);
  if (reactions.length && !m.deleted) {
    const row = el('div', 'reactions');
    for (const [emoji, users] of reactions) {
      const on = users.includes(state.me);
      const names = users.map((u) => (u === state.me ? 'you' : displayName(u))).join(', ');
      const chip = button(`${emoji} ${users.length}`, `${emoji} by ${names}${on ? '; press to take yours back' : ''}`,
        () => react(m, emoji, !on), 'reaction' + (on ? ' on' : ''));
      chip.setAttribute('aria-pressed', String(on));
      chip.title = names;
      row.append(chip);
    }
    main.append(row);
  }
  if (mine && showReceipt) main.append(renderReceipt(m));
  div.append(side, main);
  if (!m.deleted) div.append(renderActions(m));
  return div;
}

function renderQuote(convId, seq) {
  const q = state.msgs.get(convId)?.get(seq);
  const box = el('blockquote', 'quote');
  box.dataset.replyTo = seq;
  if (!q) { box.textContent = 'Reply to an earlier message'; return box; }
  box.append(el('strong', null, q.sender === state.me ? 'You' : displayName(q.sender)), ' ',
    el('span', null, q.deleted ? 'Message deleted' : (q.text || ((q.attachments || []).length ? 'Attachment' : ''))));
  return box;
}

// Mentioned names (@name) are highlighted; the text stays text (never HTML).
function appendWithMentions(box, text, mentions) {
  const names = mentions.map((u) => profile(u)).filter(Boolean).flatMap((p) => [p.username, p.display_name].filter(Boolean));
  if (!names.length) { box.textContent = text; return; }
  const escaped = names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).sort((a, b) => b.length - a.length);
  const re = new RegExp(`@(${escaped.join('|')})`, 'g');
  let at = 0;
  for (const match of text.matchAll(re)) {
    box.append(text.slice(at, match.index), el('span', 'mention', match[0]));
    at = match.index + match[0].length;
  }
  box.append(text.slice(at));
}

function renderReceipt(m) {
  const c = state.convs.get(m.conv);
  const cur = cursorsOf(m.conv);
  const others = [...(state.members.get(m.conv) || new Map()).keys()].filter((u) => u !== state.me);
  if (c && c.kind === 'direct' && c.peer && !others.includes(c.peer)) others.push(c.peer);
  const readers = others.filter((u) => (cur.read.get(u) || 0) >= m.seq);
  const delivered = others.filter((u) => Math.max(cur.delivered.get(u) || 0, cur.read.get(u) || 0) >= m.seq);
  let text, cls;
  if (readers.length) {
    text = c && c.kind === 'direct' ? 'Seen' : `Seen by ${readers.map(displayName).join(', ')}`;
    cls = 'seen';
  } else if (delivered.length) { text = '✓✓ Delivered'; cls = 'delivered'; } else { text = '✓ Sent'; cls = 'sent'; }
  const p = el('div', `receipt ${cls}`, text);
  p.title = fmtFull(m.ts);
  return p;
}

function renderActions(m) {
  const bar = el('div', 'msg-actions');
  const c = state.convs.get(m.conv);
  bar.append(button('Reply', null, () => startReply(m)), button('React', 'React to this message', (e) => openPicker(m, e.currentTarget)));
  if (m.sender === state.me) bar.append(button('Edit', null, () => startEdit(m)));
  if (m.sender === state.me || (c && may(m.conv, 'kick'))) bar.append(button('Delete', null, () => deleteMessage(m)));
  if (m.sender !== state.me) bar.append(button('Report', null, () => reportMessage(m)));
  return bar;
}

// ---------- attachments ----------

function renderFiles(m) {
  const box = el('div', 'files');
  for (const id of m.attachments) {
    const f = state.files.get(id);
    const item = el('div', 'file');
    item.dataset.fileId = id;
    if (f && (f.thumbs || []).length) {
      const img = el('img', 'thumb');
      img.alt = f.name || 'image';
      if (f.width && f.height) { img.width = Math.min(320, f.width); img.height = Math.round(img.width * f.height / f.width); }
      item.append(img);
      fileUrls(id).then((body) => {
        const t = body.thumbnails || {};
        img.src = t['480'] || t['96'] || body.url;
      }, () => { img.alt = `${f.name}: preview not available`; });
    }
    const label = f ? `${f.name} (${fmtSize(f.size)})` : 'Attachment';
    item.append(button(`⬇ ${label}`, `Download ${f ? f.name : 'attachment'}`, () => download(id), 'link download'));
    box.append(item);
    if (!f) fileUrls(id).then((body) => { state.files.set(id, body); if (m.conv === state.selected) renderMessages(); }, () => {});
  }
  return box;
}

// GET /v1/attachments/{id}: the file object with short-lived URLs; asked again when they age.
function fileUrls(id) {
  const held = state.fileUrls.get(id);
  if (held && Date.now() - held.at < FILE_URL_KEEP_MS) return held.promise;
  const promise = api('GET', `/v1/attachments/${encodeURIComponent(id)}`);
  state.fileUrls.set(id, { at: Date.now(), promise });
  promise.catch(() => state.fileUrls.delete(id));
  return promise;
}

async function download(id) {
  try {
    const body = await fileUrls(id);
    const a = el('a');
    a.href = body.url;
    a.download = body.name || 'file';
    document.body.append(a);
    a.click();
    a.remove();
  } catch (err) { showError('composer-error', `Cannot download: ${explain(err)}`); }
}

async function attachFiles(files) {
  const convId = state.selected;
  if (!convId) return;
  showError('composer-error', '');
  for (const file of files) {
    const item = { id: null, name: file.name || 'pasted image', done: false };
    state.uploads.push(item);
    renderUploads();
    try {
      const up = await api('POST', '/v1/uploads', { conv: convId, name: item.name, mime: file.type || 'application/octet-stream', size: file.size });
      const put = await fetch(up.upload_url, { method: up.method || 'PUT', headers: up.headers || {}, body: file });
      if (!put.ok) throw { message: `the upload was refused (${put.status})` };
      const done = await api('POST', `/v1/uploads/${encodeURIComponent(up.id)}/complete`, {});
      state.files.set(up.id, done);
      Object.assign(item, { id: up.id, done: true });
    } catch (err) {
      state.uploads = state.uploads.filter((u) => u !== item);
      showError('composer-error', `${item.name}: ${explain(err.status === 415 ? { message: 'this kind of file cannot be sent' } : err)}`);
    }
    renderUploads();
  }
}

function renderUploads() {
  $('upload-list').replaceChildren(...state.uploads.map((u) => {
    const li = el('li', 'chip', u.done ? u.name : `${u.name} (uploading…)`);
    li.append(button('×', `Remove ${u.name}`, () => { state.uploads = state.uploads.filter((x) => x !== u); renderUploads(); }));
    return li;
  }));
}

// ---------- history and read state ----------

async function loadHistory(convId) {
  if (state.loading.has(convId)) return;
  state.loading.add(convId);
  const res = await request('history', { conv: convId, limit: PAGE }).catch(() => null);
  state.loading.delete(convId);
  if (!res) return;
  state.loaded.add(convId);
  if (res.messages.length < PAGE) state.noOlder.add(convId);
  res.messages.forEach(addMessage);
  if (state.selected === convId) { renderMessages(); renderOlderButton(); scrollToBottom(); markRead(convId); }
  const newest = res.messages[res.messages.length - 1];
  if (newest) request('received', { conv: convId, seq: newest.seq }).catch(() => {});
  renderConvList();
}

async function loadOlder() {
  const convId = state.selected;
  const seqs = [...(state.msgs.get(convId) || new Map()).keys()];
  if (!convId || !seqs.length) return;
  const res = await request('history', { conv: convId, before: Math.min(...seqs), limit: PAGE }).catch(() => null);
  if (!res || state.selected !== convId) return;
  if (res.messages.length < PAGE) state.noOlder.add(convId);
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;   // keep the view where it was
  res.messages.forEach(addMessage);
  renderMessages();
  scroller.scrollTop = scroller.scrollHeight - fromBottom;
  renderOlderButton();
}

function renderOlderButton() {
  const c = state.selected;
  const min = Math.min(...(state.msgs.get(c) || new Map()).keys());
  $('load-older').hidden = !c || !state.loaded.has(c) || state.noOlder.has(c) || !(min > 1);
}

// Tells the server we have seen the newest message of a conversation that is on screen.
// Debounced so a burst of incoming messages costs one read request.
function markRead(convId) {
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(() => {
    const c = state.convs.get(convId);
    const seq = maxSeq(convId);
    if (!c || convId !== state.selected || document.hidden) return;
    if (c.unread) { c.unread = 0; renderConvList(); }
    if (seq <= (c.read_seq || 0)) return;   // e.g. our own send already moved the cursor
    c.read_seq = seq;
    request('read', { conv: convId, seq }).catch(() => {});
  }, 200);
}

// ---------- sending, editing, reacting ----------

function sendComposer() {
  const box = $('composer');
  const text = box.value.trim();
  const convId = state.selected;
  if (!convId) return;
  showError('composer-error', '');
  if (state.uploads.some((u) => !u.done)) return showError('composer-error', 'Wait for the files to finish uploading.');
  const attachments = state.uploads.map((u) => u.id);
  if (!text && !attachments.length) return;
  if (text.length > state.limits.max_text_chars) return showError('composer-error', `The message is too long (at most ${state.limits.max_text_chars} characters).`);
  if (state.editing) return saveEdit(text);
  const cmid = newId();
  const pendingEl = el('div', 'pending-msg', text || attachments.map((id) => state.files.get(id)?.name || 'file').join(', '));
  const mentions = mentionedIds(text);
  state.outbox.set(cmid, { conv: convId, text, el: pendingEl, attachments, reply_to: state.replyTo, mentions });
  $('pending').append(pendingEl);
  scrollToBottom();
  box.value = '';
  keepDraft(convId, '');
  state.uploads = [];
  state.replyTo = null;
  renderUploads();
  renderReplyBar();
  trySend(cmid);
}

// People named as @username or @display name among the conversation's members.
function mentionedIds(text) {
  const ids = [];
  for (const u of (state.members.get(state.selected) || new Map()).keys()) {
    const p = profile(u);
    if (!p) continue;
    if ([p.username, p.display_name].filter(Boolean).some((n) => text.includes(`@${n}`))) ids.push(u);
  }
  return ids;
}

// Sends (or re-sends: the same cmid makes the server return the original seq) one outbox entry.
async function trySend(cmid) {
  const o = state.outbox.get(cmid);
  if (!o) return;
  o.el.classList.remove('failed');
  const fields = { conv: o.conv, cmid, text: o.text };
  if (o.attachments.length) fields.attachments = o.attachments;
  if (o.reply_to) fields.reply_to = o.reply_to;
  if (o.mentions.length) fields.mentions = o.mentions;
  try {
    const res = await request('send', fields);
    // The echo event normally arrives too; this covers the case where it was dropped.
    if (!state.msgs.get(res.conv)?.has(res.seq)) {
      const held = maxSeq(res.conv);
      if (state.loaded.has(res.conv) && res.seq > held + 1) catchUp(res.conv, held);
      addMessage({ conv: res.conv, seq: res.seq, ts: res.ts, sender: state.me, cmid, ...fields, reactions: {} });
      if (res.conv === state.selected) renderMessages();
    }
    dropPending(cmid);
    renderConvList();
  } catch (err) {
    if (err.code === 'disconnected') return;          // flushOutbox retries after reconnect
    if (err.code === 'rate_limited') {
      showError('composer-error', `Sending too fast; your message goes out in ${Math.ceil((err.retry_after_ms || 1000) / 1000)} s.`);
      return setTimeout(() => trySend(cmid), err.retry_after_ms || 1000);
    }
    o.el.classList.add('failed');
    o.el.title = `Not sent: ${explain(err)}`;
    if (o.conv === state.selected) showError('composer-error', `Not sent: ${explain(err)}`);
    state.outbox.delete(cmid);
  }
}

function dropPending(cmid) {
  const o = state.outbox.get(cmid);
  if (o) { o.el.remove(); state.outbox.delete(cmid); }
}

function flushOutbox() { for (const cmid of state.outbox.keys()) trySend(cmid); }

function startReply(m) {
  state.editing = null;
  state.replyTo = m.seq;
  renderReplyBar();
  $('composer').focus();
}

function startEdit(m) {
  state.replyTo = null;
  state.editing = m.seq;
  $('composer').value = m.text || '';
  renderReplyBar();
  $('composer').focus();
}

function renderReplyBar() {
  const m = state.selected && state.msgs.get(state.selected)?.get(state.replyTo || state.editing);
  $('reply-bar').hidden = !m;
  if (!m) return;
  const snippet = (m.text || 'attachment').slice(0, 80);
  $('reply-text').textContent = state.editing ? `Editing: ${snippet}` : `Replying to ${m.sender === state.me ? 'yourself' : displayName(m.sender)}: ${snippet}`;
}

async function saveEdit(text) {
  const seq = state.editing;
  try {
    await request('edit', { conv: state.selected, seq, text });
    state.editing = null;
    $('composer').value = '';
    renderReplyBar();
  } catch (err) { showError('composer-error', `Not edited: ${explain(err)}`); }
}

async function deleteMessage(m) {
  if (!confirm('Delete this message for everyone?')) return;
  try { await request('delete', { conv: m.conv, seq: m.seq }); } catch (err) { showError('composer-error', `Not deleted: ${explain(err)}`); }
}

async function react(m, emoji, on) {
  try { await request('react', { conv: m.conv, seq: m.seq, emoji, on }); } catch (err) { showError('composer-error', explain(err)); }
}

async function reportMessage(m) {
  const reason = prompt('Why are you reporting this message?');
  if (!reason || !reason.trim()) return;
  try {
    await api('POST', '/v1/reports', { kind: 'message', conv: m.conv, seq: m.seq, reason: reason.trim().slice(0, 512) });
    setStatus('Thank you: the report was sent to the moderators.');
  } catch (err) { showError('composer-error', `Report not sent: ${explain(err)}`); }
}

function openPicker(m, anchor) {
  const picker = $('emoji-picker');
  picker.replaceChildren(...EMOJI.map((e) => button(e, `React with ${e}`, () => { closePicker(); react(m, e, true); }, 'emoji')));
  picker.hidden = false;
  const r = anchor.getBoundingClientRect();
  picker.style.setProperty('--top', `${Math.max(8, r.top - 110)}px`);
  picker.style.setProperty('--left', `${Math.max(8, Math.min(window.innerWidth - 260, r.left - 200))}px`);
  picker.dataset.returnTo = m.seq;
  picker.querySelector('button').focus();
}

function closePicker() {
  const picker = $('emoji-picker');
  if (picker.hidden) return;
  picker.hidden = true;
  const msg = $('messages').querySelector(`.msg[data-seq="${picker.dataset.returnTo}"] .msg-actions button`);
  if (msg) msg.focus();
}

// ---------- mentions autocomplete ----------

function mentionQuery() {
  const box = $('composer');
  const before = box.value.slice(0, box.selectionStart);
  const match = /(^|\s)@([^\s@]{0,32})$/.exec(before);
  return match ? match[2].toLowerCase() : null;
}

function renderMentions() {
  const q = mentionQuery();
  const list = $('mention-results');
  const members = [...(state.members.get(state.selected) || new Map()).keys()].filter((u) => u !== state.me);
  const found = q === null ? [] : members.filter((u) => {
    const p = profile(u);
    return p && [p.username, p.display_name].filter(Boolean).some((n) => n.toLowerCase().startsWith(q));
  }).slice(0, 6);
  list.hidden = !found.length;
  list.replaceChildren(...found.map((u, i) => {
    const li = el('li', 'person' + (i === 0 ? ' active' : ''));
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', String(i === 0));
    li.dataset.userId = u;
    li.append(avatar(u), el('span', 'person-name', `${displayName(u)} @${profile(u).username}`));
    li.addEventListener('mousedown', (e) => { e.preventDefault(); insertMention(u); });
    return li;
  }));
}

function insertMention(u) {
  const box = $('composer');
  const at = box.selectionStart;
  const before = box.value.slice(0, at).replace(/@([^\s@]{0,32})$/, `@${profile(u).username} `);
  box.value = before + box.value.slice(at);
  box.selectionStart = box.selectionEnd = before.length;
  $('mention-results').hidden = true;
  box.focus();
}

function onComposerInput() {
  if (state.selected) keepDraft(state.selected, $('composer').value);
  showError('composer-error', '');
  renderMentions();
  const now = Date.now();
  if (!state.selected || now - state.lastTypingSent < TYPING_SEND_MS) return;
  state.lastTypingSent = now;
  request('typing', { conv: state.selected }).catch(() => {});
}

// ---------- events ----------

function handleEvent(ev) {
  switch (ev.type) {
    case 'message.new': return onMessageNew(ev);
    case 'message.edited':
    case 'message.deleted':
      noteLast(ev.message);
      if (state.msgs.get(ev.message.conv)?.has(ev.message.seq)) addMessage(ev.message);
      return refreshView(ev.message.conv);
    case 'reaction': return onReaction(ev);
    case 'conv.updated': upsertConv(ev.conv); return renderAll();
    case 'read': return onRead(ev);
    case 'delivered':
      cursorsOf(ev.conv).delivered.set(ev.user, Math.max(cursorsOf(ev.conv).delivered.get(ev.user) || 0, ev.seq));
      return refreshView(ev.conv);
    case 'typing': return onTyping(ev);
    case 'presence': state.presence.set(ev.user, ev.status); return renderAll();
    case 'user.updated': learnProfiles([ev.user]); return renderAll();
    case 'member.joined': case 'member.updated': case 'member.banned': case 'member.muted': case 'member.unmuted':
      if (ev.conv === state.selected) loadMembers(ev.conv);
      return renderConvList();
    case 'member.left':
      if (ev.user === state.me) {
        state.convs.delete(ev.conv);
        if (state.selected === ev.conv) {
          selectConv(null);
          if (ev.by) setStatus('You were removed from the conversation.');
        }
        return renderConvList();
      }
      if (ev.conv === state.selected) loadMembers(ev.conv);
      return;
    case 'resync': return resync();
    default: return;   // calls and pins: not shown by this client
  }
}

function refreshView(convId) {
  if (convId === state.selected) renderMessages();
  renderConvList();
}

function onMessageNew(ev) {
  const m = ev.message;
  for (const f of ev.files || []) if (!state.files.has(f.id)) state.files.set(f.id, f);
  const held = maxSeq(m.conv);
  const gap = state.loaded.has(m.conv) && m.seq > held + 1;
  if (!state.convs.has(m.conv)) refreshConvs();        // first news of this conversation
  clearTyping(m.conv, m.sender);
  if (!addMessage(m)) return;                          // duplicate delivery
  const c = state.convs.get(m.conv);
  const visible = m.conv === state.selected && !document.hidden;
  if (m.sender !== state.me) {
    request('received', { conv: m.conv, seq: m.seq }).catch(() => {});
    if (c && m.seq > (c.read_seq || 0) && !visible) c.unread = (c.unread || 0) + 1;
    if (!visible) notify(m);
  }
  if (gap) catchUp(m.conv, held);
  if (visible && m.sender !== state.me) markRead(m.conv);
  refreshView(m.conv);
}

function onReaction(ev) {
  const m = state.msgs.get(ev.conv)?.get(ev.seq);
  if (!m) return;
  const reactions = { ...(m.reactions || {}) };
  const users = new Set(reactions[ev.emoji] || []);
  if (ev.on) users.add(ev.user); else users.delete(ev.user);
  reactions[ev.emoji] = [...users];
  m.reactions = reactions;
  refreshView(ev.conv);
}

function onRead(ev) {
  const c = state.convs.get(ev.conv);
  if (!c) return;
  if (ev.user !== state.me) {
    cursorsOf(ev.conv).read.set(ev.user, Math.max(cursorsOf(ev.conv).read.get(ev.user) || 0, ev.seq));
    return refreshView(ev.conv);
  }
  c.read_seq = Math.max(c.read_seq || 0, ev.seq);
  c.unread = ev.seq >= (c.last_seq || 0) ? 0 : Math.min(c.unread || 0, c.last_seq - ev.seq);
  renderConvList();
}

function notify(m) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const c = state.convs.get(m.conv);
  const title = c && c.kind !== 'direct' ? `${displayName(m.sender)} in ${convLabel(c)}` : displayName(m.sender);
  const n = new Notification(title, { body: m.text || 'Sent an attachment', tag: m.conv });
  n.onclick = () => { window.focus(); selectConv(m.conv); n.close(); };
}

function onTyping(ev) {
  if (ev.user === state.me) return;
  if (!state.typers.has(ev.conv)) state.typers.set(ev.conv, new Map());
  const t = state.typers.get(ev.conv);
  clearTimeout(t.get(ev.user));
  t.set(ev.user, setTimeout(() => clearTyping(ev.conv, ev.user), TYPING_SHOW_MS));
  renderTyping();
}

function clearTyping(convId, user) {
  const t = state.typers.get(convId);
  if (!t || !t.has(user)) return;
  clearTimeout(t.get(user));
  t.delete(user);
  renderTyping();
}

function renderTyping() {
  const users = [...(state.typers.get(state.selected) || new Map()).keys()].map(displayName);
  $('typing').textContent = users.length ? `${users.join(', ')} ${users.length > 1 ? 'are' : 'is'} typing…` : '';
}

// ---------- staff: reports queue and user lookup (admin API) ----------

async function loadReports() {
  showError('reports-error', '');
  try {
    const res = await api('GET', `/v1/admin/reports?status=${$('report-status').value}&limit=50`);
    $('report-list').replaceChildren(...res.reports.map(renderReport));
    if (!res.reports.length) $('report-list').append(el('li', 'hint', 'Nothing here.'));
  } catch (err) { showError('reports-error', explain(err)); }
}

function renderReport(r) {
  const li = el('li', 'report');
  li.dataset.reportId = r.id;
  const what = r.kind === 'message' ? `Message ${r.seq} in ${r.conv}` : 'A user';
  li.append(el('strong', null, `${what}, reported ${fmtFull(r.at)}`),
    el('div', null, `Reason: ${r.reason}`), el('div', 'hint', `Reported user: ${r.target_user}`));
  if (r.excerpt) li.append(el('blockquote', 'quote', r.excerpt));
  const act = (path, body, done) => async () => {
    showError('reports-error', '');
    try { await api('POST', `/v1/admin/reports/${r.id}/${path}`, body); setStatus(done); loadReports(); }
    catch (err) { showError('reports-error', explain(err)); }
  };
  const row = el('div', 'row');
  if (r.status === 'open') row.append(button('Claim', `Claim report ${r.id}`, act('claim', {}, 'Report claimed.'), ''));
  if (r.status !== 'resolved') {
    row.append(button('Dismiss', `Dismiss report ${r.id}`, act('resolve', { action: 'dismiss' }, 'Report dismissed.'), ''));
    if (r.kind === 'message') row.append(button('Delete message', `Delete message of report ${r.id}`, act('resolve', { action: 'delete_message' }, 'Message deleted.'), ''));
    row.append(button('Suspend user', `Suspend user of report ${r.id}`, act('resolve', { action: 'suspend_user' }, 'User suspended.'), 'danger'));
  } else li.append(el('div', 'hint', `Resolved: ${r.resolution}${r.note ? ` (${r.note})` : ''}`));
  li.append(row);
  return li;
}

async function findUsers() {
  showError('users-error', '');
  const q = $('user-q').value.trim();
  if (!q) return showError('users-error', 'Type a username or an id.');
  try {
    const res = await api('GET', `/v1/admin/users?q=${encodeURIComponent(q)}&limit=20`);
    $('user-results').replaceChildren(...res.users.map(renderAccount));
    if (!res.users.length) showError('users-error', `Nobody found for “${q}”.`);
  } catch (err) { showError('users-error', explain(err)); }
}

function renderAccount(a) {
  const li = el('li', 'account');
  li.dataset.userId = a.id;
  const suspended = a.suspended_until && a.suspended_until > Date.now();
  li.append(el('strong', null, a.display_name ? `${a.display_name} (@${a.username})` : `@${a.username}`),
    el('span', 'hint', ` ${a.id} · ${a.status}${a.role ? ` · ${a.role}` : ''}${suspended ? ` · suspended: ${a.suspend_reason || ''}` : ''}`));
  const act = (path, body, done) => async () => {
    showError('users-error', '');
    try { await api('POST', `/v1/admin/users/${a.id}/${path}`, body); setStatus(done); findUsers(); }
    catch (err) { showError('users-error', explain(err)); }
  };
  li.append(suspended
    ? button('Lift suspension', `Lift suspension of ${a.username}`, act('unsuspend', {}, 'Suspension lifted.'), '')
    : button('Suspend', `Suspend ${a.username}`, () => {
      const reason = prompt(`Why suspend ${a.username}?`);
      if (reason && reason.trim()) act('suspend', { reason: reason.trim() }, `${a.username} is suspended.`)();
    }, 'danger'));
  return li;
}

// ---------- UI wiring ----------

function nearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() { const s = $('scroller'); s.scrollTop = s.scrollHeight; }

// navigator.clipboard only exists on https/localhost; a LAN http page needs the old way.
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const ta = el('textarea');
  ta.value = text;
  document.body.append(ta);
  ta.select();
  document.execCommand('copy');
  ta.remove();
  return Promise.resolve();
}

function toggleForm(id) {
  for (const f of ['direct-form', 'group-form', 'profile-form']) $(f).hidden = f !== id || !$(f).hidden;
  for (const e of ['direct-error', 'group-error', 'profile-error']) showError(e, '');
  const first = $(id).querySelector('input');
  if (!$(id).hidden) first.focus();
}

// Arrow keys move through the conversation list (a listbox); Enter or Space opens one.
function onListKey(e) {
  const items = [...$('conv-list').querySelectorAll('.conv')];
  if (!items.length) return;
  const at = items.indexOf(document.activeElement);
  const move = (i) => { e.preventDefault(); items[Math.max(0, Math.min(items.length - 1, i))].focus(); };
  if (e.key === 'ArrowDown') move(at + 1);
  else if (e.key === 'ArrowUp') move(at < 0 ? 0 : at - 1);
  else if (e.key === 'Home') move(0);
  else if (e.key === 'End') move(items.length - 1);
  else if ((e.key === 'Enter' || e.key === ' ') && at >= 0) {
    // preventDefault: the key must not reach the composer, which gets the focus next (bug 6).
    e.preventDefault();
    selectConv(items[at].dataset.convId);
    $('composer').focus();
  } else if ((e.key === 'Enter' || e.key === ' ') && e.target === $('conv-list')) move(0);
}

// Arrow keys move through the messages; a focused message shows its actions, which Tab reaches.
function onMessagesKey(e) {
  const items = [...$('messages').querySelectorAll('.msg')];
  if (!items.length || !['ArrowUp', 'ArrowDown', 'Home', 'End'].includes(e.key)) return;
  const current = e.target.closest('.msg');
  const at = current ? items.indexOf(current) : items.length;
  const to = { ArrowUp: at - 1, ArrowDown: at + 1, Home: 0, End: items.length - 1 }[e.key];
  e.preventDefault();
  items[Math.max(0, Math.min(items.length - 1, to))].focus();
}

async function saveProfile() {
  showError('profile-error', '');
  const fields = { display_name: $('profile-name').value, status_text: $('profile-status').value };
  try {
    let p = await api('PATCH', '/v1/me/profile', fields);
    const file = $('profile-avatar').files[0];
    if (file) p = await api('PUT', '/v1/me/avatar', file, { raw: true, type: file.type });
    learnProfiles([p]);
    $('profile-form').hidden = true;
    $('profile-avatar').value = '';
    renderAll();
    $('edit-profile').focus();
  } catch (err) {
    const why = err.status === 415 ? { message: 'pictures must be PNG, JPEG, GIF or WebP' }
      : err.status === 413 ? { message: 'that picture is too large' } : err;
    showError('profile-error', explain(why));
  }
}

function openProfile() {
  toggleForm('profile-form');
  const p = profile(state.me) || {};
  $('profile-name').value = p.display_name || '';
  $('profile-status').value = p.status_text || '';
}

function wire() {
  $('auth-form').addEventListener('submit', (e) => { e.preventDefault(); authenticate('login'); });
  $('register').addEventListener('click', () => authenticate('register'));
  for (const id of ['username', 'password']) $(id).addEventListener('input', () => showError('auth-error', ''));
  $('logout').addEventListener('click', () => signOut());
  $('copy-id').addEventListener('click', () => copyText(state.me || '')
    .then(() => setStatus('User id copied'), () => setStatus('Copy failed; select the id by hand')));
  $('enable-notifications').addEventListener('click', () => {
    if (!('Notification' in window)) return setStatus('This browser has no desktop notifications.');
    Notification.requestPermission().then((p) => {
      setStatus(p === 'granted' ? 'Desktop notifications are on.' : 'Desktop notifications stay off.');
      $('enable-notifications').hidden = p === 'granted';
    });
  });
  $('edit-profile').addEventListener('click', openProfile);
  $('staff-open').addEventListener('click', () => { showView('staff'); loadReports(); $('staff-close').focus(); });
  $('staff-close').addEventListener('click', () => { showView('chat'); $('staff-open').focus(); });
  $('report-status').addEventListener('change', loadReports);
  $('user-search').addEventListener('submit', (e) => { e.preventDefault(); findUsers(); });
  $('profile-form').addEventListener('submit', (e) => { e.preventDefault(); saveProfile(); });
  $('new-direct').addEventListener('click', () => toggleForm('direct-form'));
  $('new-group').addEventListener('click', () => toggleForm('group-form'));
  for (const b of document.querySelectorAll('.inline-form .cancel')) b.addEventListener('click', () => { b.form.hidden = true; });

  const directPick = peoplePicker($('direct-peer'), $('direct-results'), 'direct-error',
    (p) => createConv({ kind: 'direct', members: [p.id] }, $('direct-form'), 'direct-error'));
  $('direct-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const typed = $('direct-peer').value.trim();
    if (!typed) { showError('direct-error', 'Type a name or username to find someone.'); return $('direct-peer').focus(); }
    const p = await directPick();
    if (p) createConv({ kind: 'direct', members: [p.id] }, $('direct-form'), 'direct-error');
    else if (p === null) showError('direct-error', `Nobody found for “${typed}”. Check the spelling, or ask them for their username.`);
  });

  const chosen = new Map();
  const renderChosen = () => $('group-chosen').replaceChildren(...[...chosen.values()].map((p) => {
    const li = el('li', 'chip', p.display_name || p.username);
    li.dataset.userId = p.id;
    li.append(button('×', `Remove ${p.display_name || p.username}`, () => { chosen.delete(p.id); renderChosen(); }));
    return li;
  }));
  const groupPick = peoplePicker($('group-members'), $('group-results'), 'group-error',
    (p) => { chosen.set(p.id, p); $('group-members').value = ''; renderChosen(); });
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const title = $('group-title').value.trim();
    if ($('group-members').value.trim()) {
      const p = await groupPick();
      if (p) { chosen.set(p.id, p); $('group-members').value = ''; renderChosen(); }
      else if (p === null) return showError('group-error', `Nobody found for “${$('group-members').value.trim()}”.`);
    }
    if (!title) { showError('group-error', 'Give the group a name.'); return $('group-title').focus(); }
    if (!chosen.size) { showError('group-error', 'Add at least one person to the group.'); return $('group-members').focus(); }
    await createConv({ kind: 'group', members: [...chosen.keys()], title }, $('group-form'), 'group-error');
    if ($('group-form').hidden) { chosen.clear(); renderChosen(); }
  });
  $('group-form').addEventListener('reset', () => { chosen.clear(); renderChosen(); });

  peoplePicker($('invite-name'), $('invite-results'), 'members-error', async (p) => {
    try {
      await request('conv.invite', { conv: state.selected, users: [p.id] });
      $('invite-name').value = '';
      setStatus(`${p.display_name || p.username} was added.`);
      loadMembers(state.selected);
    } catch (err) { showError('members-error', explain(err)); }
  });
  $('invite-form').addEventListener('submit', (e) => e.preventDefault());
  $('rename-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError('members-error', '');
    const title = $('rename-title').value.trim();
    try {
      const res = await request('conv.update', { conv: state.selected, title: title || null });
      upsertConv(res.conv);
      renderAll();
    } catch (err) { showError('members-error', explain(err)); }
  });
  $('leave-conv').addEventListener('click', async () => {
    const convId = state.selected;
    if (!convId || !confirm('Leave this conversation?')) return;
    try {
      await request('conv.leave', { conv: convId });
      state.convs.delete(convId);
      selectConv(null);
    } catch (err) { showError('members-error', explain(err)); }
  });
  const panel = (open) => {
    $('members-panel').hidden = !open;
    $('toggle-members').setAttribute('aria-expanded', String(open));
    $('chat-view').classList.toggle('panel-open', open);
    if (open) renderMembers();
    (open ? $('members-close') : $('toggle-members')).focus();
  };
  $('toggle-members').addEventListener('click', () => panel($('members-panel').hidden));
  $('members-close').addEventListener('click', () => panel(false));

  $('conv-list').addEventListener('click', (e) => {
    const li = e.target.closest('.conv');
    if (li) { selectConv(li.dataset.convId); $('composer').focus(); }
  });
  $('conv-list').addEventListener('keydown', onListKey);
  $('messages').addEventListener('keydown', onMessagesKey);
  $('back').addEventListener('click', () => { const was = state.selected; selectConv(null); const li = was && $(`conv-${was}`); if (li) li.focus(); });
  $('load-older').addEventListener('click', loadOlder);
  $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); sendComposer(); });
  $('composer').addEventListener('keydown', (e) => {
    const mentions = $('mention-results');
    if (!mentions.hidden && (e.key === 'Enter' || e.key === 'Tab')) {
      const first = mentions.querySelector('.person');
      if (first) { e.preventDefault(); return insertMention(first.dataset.userId); }
    }
    if (e.key === 'Escape') { mentions.hidden = true; state.replyTo = null; if (state.editing) { state.editing = null; $('composer').value = ''; } renderReplyBar(); }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendComposer(); }
  });
  $('composer').addEventListener('input', onComposerInput);
  $('composer').addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); attachFiles(files); }
  });
  $('reply-cancel').addEventListener('click', () => { state.replyTo = null; state.editing = null; renderReplyBar(); $('composer').focus(); });
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', () => { attachFiles([...$('file-input').files]); $('file-input').value = ''; });
  const main = $('main');
  main.addEventListener('dragover', (e) => { if (state.selected && e.dataTransfer.types.includes('Files')) { e.preventDefault(); main.classList.add('dropping'); } });
  main.addEventListener('dragleave', () => main.classList.remove('dropping'));
  main.addEventListener('drop', (e) => {
    main.classList.remove('dropping');
    if (!state.selected || !e.dataTransfer.files.length) return;
    e.preventDefault();
    attachFiles([...e.dataTransfer.files]);
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closePicker(); });
  document.addEventListener('click', (e) => {
    if (!$('emoji-picker').hidden && !e.target.closest('#emoji-picker') && !e.target.closest('.msg-actions')) closePicker();
  });
  window.addEventListener('storage', onStorage);
  document.addEventListener('visibilitychange', () => { if (!document.hidden && state.selected) markRead(state.selected); });
}

wire();
startSession();
