// Parley web client: plain JS, no build step, nothing loaded from the internet.
// Wire contract: docs/protocol.md (REST /v1/auth/*, WebSocket /v1/ws, JSON frames).
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

const state = {
  token: null, me: null, refreshTimer: null, live: false,   // live: hello answered on the socket
  ws: null, ridSeq: 0, pending: new Map(),   // rid -> {resolve, reject, op, quiet}
  limits: { max_text_chars: 16384, history_max: 200 },
  heartbeat: null, lastFrameAt: 0, backoff: 0, reconnectTimer: null, everConnected: false,
  convs: new Map(),      // conv id -> conv object (server fields + local: lastTs)
  msgs: new Map(),       // conv id -> Map(seq -> message)
  loaded: new Set(),     // conv ids whose newest history page has been fetched
  loading: new Set(),    // conv ids with that first page in flight (avoids double requests)
  noOlder: new Set(),    // conv ids where "load older" reached the start
  selected: null,
  outbox: new Map(),     // cmid -> {conv, text, el}: sends not yet acknowledged, retried after reconnect
  typers: new Map(),     // conv id -> Map(user -> timeout id)
  lastTypingSent: 0, readTimer: null,
  callsOn: false,        // the server has a LiveKit (GET /v1/client/capabilities)
  call: null,            // the call shown in #call-bar: {id, conv, media, initiator, mine: incoming|outgoing|in}
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

function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text || '';
  s.className = kind || '';
}

function fmtTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return '';
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

function toMs(v) { return typeof v === 'number' ? v : (Date.parse(v) || 0); }

function who(user) { return user === state.me ? 'me' : user; }

// ---------- REST auth ----------

async function authenticate(kind) {
  const username = $('username').value.trim().toLowerCase();
  const password = $('password').value;
  setStatus(kind === 'register' ? 'Registering…' : 'Logging in…');
  let res, body = null;
  try {
    res = await fetch(`/v1/auth/${kind}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    body = await res.json().catch(() => null);
  } catch (e) {
    return setStatus(`Cannot reach the server: ${e.message}`, 'error');
  }
  if (!res.ok || !body || !body.token) {
    let msg = (body && body.error && body.error.message) || `HTTP ${res.status}`;
    if (res.status === 429 && res.headers.get('Retry-After')) msg += ` (retry in ${res.headers.get('Retry-After')} s)`;
    return setStatus(msg, 'error');
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
    if (state.live) await request('auth', { token: state.token }, { quiet: true }).catch(() => {});
  });
}

// Another tab refreshed: this one's socket moves onto the new token too.
function onStorage(e) {
  if (e.key !== STORE.token || !e.newValue || e.newValue === state.token || !state.me) return;
  state.token = e.newValue;
  scheduleRefresh();
  if (state.live) request('auth', { token: state.token }, { quiet: true }).catch(() => {});
}

function startSession() {
  state.token = localStorage.getItem(STORE.token);
  state.me = localStorage.getItem(STORE.user);
  if (!state.token) return showView('auth');
  scheduleRefresh();
  $('my-username').textContent = localStorage.getItem(STORE.name) || '';
  $('my-user-id').textContent = state.me || '';
  showView('chat');
  loadCapabilities();
  connect();
}

// The logout button: this login ends on the server too (its other tabs' sockets close 4003).
function signOut() {
  const token = state.token;
  if (token) fetch('/v1/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  logout();
}

function logout(message) {
  for (const k of [STORE.token, STORE.user, STORE.name, STORE.refresh, STORE.expires]) localStorage.removeItem(k);
  clearTimeout(state.refreshTimer);
  const ws = state.ws;
  state.ws = null;                 // cleared first so onclose does not schedule a reconnect
  if (ws) ws.close(1000);
  clearTimeout(state.reconnectTimer);
  stopHeartbeat();
  state.pending.clear();
  Object.assign(state, { token: null, me: null, selected: null, everConnected: false, backoff: 0, live: false, call: null });
  renderCallBar();
  for (const k of ['convs', 'msgs', 'loaded', 'loading', 'noOlder', 'outbox', 'typers']) state[k].clear();
  $('conv-list').replaceChildren();
  selectConv(null);
  showView('auth');
  setStatus(message || '', message ? 'error' : '');
}

function showView(name) {
  $('auth-view').hidden = name !== 'auth';
  $('chat-view').hidden = name !== 'chat';
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
    request('ping', {}, { quiet: true }).catch(() => {});
  }, seconds * 1000);
}

function stopHeartbeat() { clearInterval(state.heartbeat); state.heartbeat = null; }

// Sends one request and resolves with the ok frame, or rejects with the error frame.
function request(op, fields, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return reject({ code: 'disconnected', message: 'not connected' });
    const rid = `r${++state.ridSeq}`;
    state.pending.set(rid, { resolve, reject, op, quiet: opts.quiet });
    ws.send(JSON.stringify({ op, rid, ...fields }));
  });
}

function onFrame(data) {
  state.lastFrameAt = Date.now();
  let f;
  try { f = JSON.parse(data); } catch { return; }
  if (f.op === 'event') return handleEvent(f);
  const p = f.rid != null && state.pending.get(f.rid);
  if (!p) {
    if (f.op === 'error') setStatus(`Server error: ${f.message || f.code}`, 'error');
    return;
  }
  state.pending.delete(f.rid);
  if (f.op === 'ok') {
    if (!p.quiet && $('status').className === 'error') setStatus('Connected');   // an old error no longer applies
    return p.resolve(f);
  }
  // A rate-limited send is retried by trySend, which says so itself.
  if (!p.quiet && !(p.op === 'send' && f.code === 'rate_limited')) setStatus(`${p.op}: ${f.message || f.code}`, 'error');
  p.reject(f);
}

// ---------- conversations ----------

async function refreshConvs() {
  const res = await request('conv.list', {}).catch(() => null);
  if (res) for (const c of res.convs || []) upsertConv(c);
  renderConvList();
}

// Merges a conv object from the server; keeps local-only fields (lastTs).
function upsertConv(c) {
  const old = state.convs.get(c.id) || { lastTs: toMs(c.created_at) };
  state.convs.set(c.id, { ...old, ...c });
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
    if (state.loaded.has(s.conv)) {
      (s.messages || []).forEach(addMessage);
      if (s.more) await catchUp(s.conv, maxSeq(s.conv));
    }
  }
  renderConvList();
  if (state.selected) markRead(state.selected);
}

// Fills a gap after the newest held message; a gap too large for one page is dropped so the
// conversation simply reloads its newest page (older ones stay reachable via "load older").
async function catchUp(convId, after) {
  const limit = state.limits.history_max || 200;
  const res = await request('history', { conv: convId, after, limit }).catch(() => null);
  if (!res) return;
  if ((res.messages || []).length >= limit) return resetConv(convId);
  res.messages.forEach(addMessage);
}

function resetConv(convId) {
  state.msgs.delete(convId);
  state.loaded.delete(convId);
  state.noOlder.delete(convId);
  if (state.selected === convId) { $('messages').replaceChildren(); loadHistory(convId); }
}

function convLabel(c) {
  if (c.title) return c.title;
  if (c.kind === 'direct') {
    if (c.peer) return `Direct: ${c.peer}`;  // the server names the other participant
  }
  return `${c.kind || 'conversation'} ${c.id}`;
}

function renderConvList() {
  const list = $('conv-list');
  const convs = [...state.convs.values()].sort((a, b) => (b.lastTs || 0) - (a.lastTs || 0));
  list.replaceChildren(...convs.map((c) => {
    const li = el('li', 'conv' + (c.id === state.selected ? ' selected' : ''));
    li.dataset.convId = c.id;
    li.tabIndex = 0;
    li.append(el('span', 'conv-title', convLabel(c)), el('span', 'conv-kind', c.kind || ''));
    if (c.unread > 0) li.append(el('span', 'unread', String(c.unread)));
    return li;
  }));
  if (state.selected && state.convs.has(state.selected)) $('conv-title').textContent = convLabel(state.convs.get(state.selected));
}

function selectConv(convId) {
  state.selected = convId;
  $('chat-view').classList.toggle('conv-open', !!convId);
  $('messages').replaceChildren();
  $('pending').replaceChildren();
  $('empty-hint').hidden = !!convId;
  $('composer').disabled = $('send').disabled = !convId;
  renderCallActions();
  $('conv-title').textContent = convId ? convLabel(state.convs.get(convId) || { id: convId }) : 'No conversation selected';
  renderTyping();
  renderConvList();
  if (!convId) return renderOlderButton();
  for (const m of sortedMessages(convId)) insertMessage(m);
  for (const o of state.outbox.values()) if (o.conv === convId) $('pending').append(o.el);
  renderOlderButton();
  scrollToBottom();
  if (state.loaded.has(convId)) markRead(convId); else loadHistory(convId);
  $('composer').focus();
}

async function createConv(fields, form) {
  try {
    const res = await request('conv.create', fields);
    upsertConv(res.conv);
    form.reset();
    form.hidden = true;
    selectConv(res.conv.id);
  } catch { /* the error is already in the status line */ }
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

// Stores a message (new, edited or deleted: a later copy replaces an earlier one) and, when its
// conversation is on screen, renders it. Returns true when the (conv, seq) pair was new.
function addMessage(m) {
  if (!state.msgs.has(m.conv)) state.msgs.set(m.conv, new Map());
  const map = state.msgs.get(m.conv);
  const isNew = !map.has(m.seq);
  map.set(m.seq, m);
  const c = state.convs.get(m.conv);
  if (c) {
    c.last_seq = Math.max(c.last_seq || 0, m.seq);
    c.lastTs = Math.max(c.lastTs || 0, m.ts || 0);
    if (m.sender === state.me) c.read_seq = Math.max(c.read_seq || 0, m.seq);   // the server does the same
  }
  if (m.sender === state.me && m.cmid) dropPending(m.cmid);
  if (m.conv === state.selected) insertMessage(m);
  return isNew;
}

function renderMessage(m) {
  const call = m.kind === 'call' ? ' call' + (m.call && m.call.missed ? ' missed' : '') : '';
  const div = el('div', 'msg' + (m.sender === state.me ? ' mine' : '') + (m.deleted ? ' deleted' : '') + call);
  div.dataset.seq = m.seq;
  div.dataset.sender = m.sender;
  const meta = el('div', 'msg-meta');
  meta.append(el('span', 'msg-sender', who(m.sender)), el('time', 'msg-time', fmtTime(m.ts)));
  if (m.edited_at && !m.deleted) meta.append(el('span', 'msg-edited', '(edited)'));
  div.append(meta, el('div', 'msg-text', m.deleted ? 'message deleted' : (m.text || '')));
  return div;
}

// Puts the element in seq order, replacing an existing copy of the same seq.
function insertMessage(m) {
  const box = $('messages');
  const node = renderMessage(m);
  const stick = nearBottom();
  const existing = box.querySelector(`.msg[data-seq="${m.seq}"]`);
  if (existing) return existing.replaceWith(node);
  const last = box.lastElementChild;
  const after = last && Number(last.dataset.seq) > m.seq   // the common case, appending, skips the scan
    ? [...box.children].find((e) => Number(e.dataset.seq) > m.seq) : null;
  box.insertBefore(node, after || null);
  if (stick && !after) scrollToBottom();
}

async function loadHistory(convId) {
  if (state.loading.has(convId)) return;
  state.loading.add(convId);
  const res = await request('history', { conv: convId, limit: PAGE }).catch(() => null);
  state.loading.delete(convId);
  if (!res) return;
  state.loaded.add(convId);
  if (res.messages.length < PAGE) state.noOlder.add(convId);
  res.messages.forEach(addMessage);
  if (state.selected === convId) { renderOlderButton(); scrollToBottom(); markRead(convId); }
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
    request('read', { conv: convId, seq }, { quiet: true }).catch(() => {});
  }, 200);
}

// ---------- sending ----------

function sendComposer() {
  const box = $('composer');
  const text = box.value.trim();
  if (!text || !state.selected) return;
  if (text.length > state.limits.max_text_chars) return setStatus(`Message too long (max ${state.limits.max_text_chars} characters)`, 'error');
  const cmid = newId();
  const pendingEl = el('div', 'pending-msg', text);
  state.outbox.set(cmid, { conv: state.selected, text, el: pendingEl });
  $('pending').append(pendingEl);
  scrollToBottom();
  box.value = '';
  trySend(cmid);
}

// Sends (or re-sends: the same cmid makes the server return the original seq) one outbox entry.
async function trySend(cmid) {
  const o = state.outbox.get(cmid);
  if (!o) return;
  o.el.classList.remove('failed');
  try {
    const res = await request('send', { conv: o.conv, cmid, text: o.text });
    // The echo event normally arrives too; this covers the case where it was dropped.
    if (!state.msgs.get(res.conv)?.has(res.seq)) {
      const held = maxSeq(res.conv);
      if (state.loaded.has(res.conv) && res.seq > held + 1) catchUp(res.conv, held);
      addMessage({ conv: res.conv, seq: res.seq, ts: res.ts, sender: state.me, cmid, text: o.text });
    }
    dropPending(cmid);
    renderConvList();
  } catch (err) {
    if (err.code === 'disconnected') return;          // flushOutbox retries after reconnect
    if (err.code === 'rate_limited') {
      setStatus(`Sending too fast; retrying in ${Math.ceil((err.retry_after_ms || 1000) / 1000)} s`, 'warn');
      return setTimeout(() => trySend(cmid), err.retry_after_ms || 1000);
    }
    o.el.classList.add('failed');
    o.el.title = `Not sent: ${err.message || err.code}`;
    state.outbox.delete(cmid);
  }
}

function dropPending(cmid) {
  const o = state.outbox.get(cmid);
  if (o) { o.el.remove(); state.outbox.delete(cmid); }
}

function flushOutbox() { for (const cmid of state.outbox.keys()) trySend(cmid); }

function onComposerInput() {
  const now = Date.now();
  if (!state.selected || now - state.lastTypingSent < TYPING_SEND_MS) return;
  state.lastTypingSent = now;
  request('typing', { conv: state.selected }, { quiet: true }).catch(() => {});
}

// ---------- events ----------

function handleEvent(ev) {
  switch (ev.type) {
    case 'message.new': return onMessageNew(ev.message);
    case 'message.edited':
    case 'message.deleted':
      if (state.msgs.get(ev.message.conv)?.has(ev.message.seq)) addMessage(ev.message);
      return;
    case 'conv.updated': upsertConv(ev.conv); return renderConvList();
    case 'read': return onRead(ev);
    case 'typing': return onTyping(ev);
    case 'member.joined': return renderConvList();
    case 'member.left':
      if (ev.user === state.me) { state.convs.delete(ev.conv); if (state.selected === ev.conv) selectConv(null); renderConvList(); }
      return;
    case 'resync': return resync();
    case 'call.ringing': case 'call.accepted': case 'call.declined': case 'call.left': case 'call.ended':
      return onCallEvent(ev);
    default: return;   // reactions, presence, call.joined: not shown by this client
  }
}

// ---------- calls ----------
// This page rings, calls, answers, declines and hangs up, and shows the call records; it carries
// no audio or video: that needs LiveKit's client SDK, which it does not load (its Content
// Security Policy admits nothing from elsewhere, and the SDK is not vendored here). The `join`
// of call.start and call.join (LiveKit URL, token, ICE servers) is what an app hands that SDK.

async function loadCapabilities() {
  const caps = await fetch('/v1/client/capabilities').then((r) => r.json()).catch(() => null);
  state.callsOn = !!(caps && caps.features && caps.features.calls);
  renderCallActions();
}

function renderCallActions() {
  for (const id of ['call-audio', 'call-video']) {
    $(id).hidden = !state.callsOn || !state.selected;
    $(id).disabled = !!state.call;
  }
}

function renderCallBar() {
  const c = state.call;
  $('call-bar').hidden = !c;
  renderCallActions();
  if (!c) return;
  const conv = state.convs.get(c.conv);
  const where = conv ? ` (${convLabel(conv)})` : '';
  $('call-text').textContent = c.mine === 'incoming' ? `Incoming ${c.media} call from ${who(c.initiator)}${where}`
    : c.mine === 'outgoing' ? `Calling…${where}` : `In ${c.media} call${where}`;
  $('call-bar').className = c.mine;
  $('call-accept').hidden = $('call-decline').hidden = c.mine !== 'incoming';
  $('call-hangup').hidden = c.mine === 'incoming';
  $('call-hangup').textContent = c.mine === 'outgoing' ? 'Cancel' : 'Hang up';
  $('call-note').hidden = c.mine !== 'in';
}

function showCall(call, mine) {
  state.call = { id: call.id || call.call, conv: call.conv, media: call.media, initiator: call.initiator, mine };
  renderCallBar();
}

function endCall(message) {
  state.call = null;
  renderCallBar();
  if (message) setStatus(message);
}

async function startCall(media) {
  try {
    const res = await request('call.start', { conv: state.selected, media });
    showCall(res.call, res.call.state === 'ringing' ? 'outgoing' : 'in');
  } catch { /* the error is already in the status line */ }
}

async function answerCall() {
  const c = state.call;
  try {
    await request('call.join', { call: c.id });
    if (state.call && state.call.id === c.id) showCall(c, 'in');
  } catch { endCall(); }
}

function declineCall() {
  request('call.decline', { call: state.call.id }).catch(() => {});
  endCall();
}

function hangUp() {
  request('call.leave', { call: state.call.id }).catch(() => {});
  endCall();
}

function onCallEvent(ev) {
  const c = state.call;
  if (ev.type === 'call.ringing') {
    if (ev.initiator !== state.me && ev.ringing.includes(state.me) && !c) return showCall(ev, 'incoming');
    if (c && c.id === ev.call && c.mine === 'incoming' && !ev.ringing.includes(state.me)) endCall();
    return;
  }
  if (!c || c.id !== ev.call) return;
  if (ev.type === 'call.ended') return endCall(`Call ended: ${ev.reason}`);
  if (ev.type === 'call.accepted') {
    // Our own answer on another device stops this one ringing; the callee's answer connects a caller.
    if (ev.user === state.me && ev.device !== deviceId()) return endCall('Answered on another device');
    if (ev.user !== state.me && c.mine === 'outgoing') showCall(c, 'in');
    return;
  }
  if (ev.user === state.me) return endCall();          // declined, or left, elsewhere (or removed)
  if (ev.type === 'call.declined') setStatus(`${who(ev.user)} ${ev.busy ? 'is busy' : 'declined'}`);
}

function onMessageNew(m) {
  const held = maxSeq(m.conv);
  const gap = state.loaded.has(m.conv) && m.seq > held + 1;
  if (!state.convs.has(m.conv)) refreshConvs();        // first news of this conversation
  clearTyping(m.conv, m.sender);
  if (!addMessage(m)) return;                          // duplicate delivery
  const c = state.convs.get(m.conv);
  const visible = m.conv === state.selected && !document.hidden;
  if (c && m.sender !== state.me && m.seq > (c.read_seq || 0) && !visible) c.unread = (c.unread || 0) + 1;
  if (gap) catchUp(m.conv, held);
  if (visible && m.sender !== state.me) markRead(m.conv);
  renderConvList();
}

function onRead(ev) {
  const c = state.convs.get(ev.conv);
  if (!c || ev.user !== state.me) return;             // only our own cursor (other devices) matters here
  c.read_seq = Math.max(c.read_seq || 0, ev.seq);
  c.unread = ev.seq >= (c.last_seq || 0) ? 0 : Math.min(c.unread || 0, c.last_seq - ev.seq);
  renderConvList();
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
  const users = [...(state.typers.get(state.selected) || new Map()).keys()];
  $('typing').textContent = users.length ? `${users.join(', ')} ${users.length > 1 ? 'are' : 'is'} typing…` : '';
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
  for (const f of ['direct-form', 'group-form']) $(f).hidden = f !== id || !$(f).hidden;
  const first = $(id).querySelector('input');
  if (!$(id).hidden) first.focus();
}

function wire() {
  $('auth-form').addEventListener('submit', (e) => { e.preventDefault(); authenticate('login'); });
  $('register').addEventListener('click', () => authenticate('register'));
  $('logout').addEventListener('click', () => signOut());
  $('copy-id').addEventListener('click', () => copyText(state.me || '')
    .then(() => setStatus('User id copied'), () => setStatus('Copy failed; select the id by hand', 'error')));
  $('new-direct').addEventListener('click', () => toggleForm('direct-form'));
  $('new-group').addEventListener('click', () => toggleForm('group-form'));
  for (const b of document.querySelectorAll('.inline-form .cancel')) b.addEventListener('click', () => { b.form.hidden = true; });
  $('direct-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const peer = $('direct-peer').value.trim();
    if (peer) createConv({ kind: 'direct', members: [peer] }, e.target);
  });
  $('group-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const members = $('group-members').value.split(',').map((s) => s.trim()).filter(Boolean);
    const title = $('group-title').value.trim();
    createConv({ kind: 'group', members, ...(title ? { title } : {}) }, e.target);
  });
  const pick = (e) => { const li = e.target.closest('.conv'); if (li) selectConv(li.dataset.convId); };
  $('conv-list').addEventListener('click', pick);
  $('conv-list').addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(e); });
  $('back').addEventListener('click', () => selectConv(null));
  $('load-older').addEventListener('click', loadOlder);
  $('call-audio').addEventListener('click', () => startCall('audio'));
  $('call-video').addEventListener('click', () => startCall('video'));
  $('call-accept').addEventListener('click', answerCall);
  $('call-decline').addEventListener('click', declineCall);
  $('call-hangup').addEventListener('click', hangUp);
  $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); sendComposer(); });
  $('composer').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendComposer(); }
  });
  $('composer').addEventListener('input', onComposerInput);
  window.addEventListener('storage', onStorage);
  document.addEventListener('visibilitychange', () => { if (!document.hidden && state.selected) markRead(state.selected); });
}

wire();
startSession();
