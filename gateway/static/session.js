// The login: sign-in and register, keeping the tokens fresh, and the WebSocket session.
import { loadCapabilities, renderCallBar } from './calls.js';
import { askPresence, draftsKey, loadDrafts, refreshConvs, renderMe, resync, selectConv } from './conversations.js';
import { $, api, explain, newId, REFRESH_AHEAD_MAX_S, setStatus, showError, state, STORE } from './core.js';
import { handleEvent } from './events.js';
import { flushOutbox, loadHistory } from './messages.js';
import { learnProfiles } from './people.js';

// ---------- REST auth ----------

export async function authenticate(kind) {
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

export function keepTokens(pair) {
  localStorage.setItem(STORE.token, pair.token);
  localStorage.setItem(STORE.refresh, pair.refresh_token);
  localStorage.setItem(STORE.expires, String(pair.expires_at));
  state.token = pair.token;
  scheduleRefresh();
}

export function expiresAt() { return Number(localStorage.getItem(STORE.expires)) || 0; }

export function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  const left = expiresAt() - Date.now() / 1000;
  const ahead = Math.min(REFRESH_AHEAD_MAX_S, left / 4);
  state.refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), Math.max(0, (left - ahead) * 1000));
}

export function oneTabAtATime(fn) {
  return navigator.locks ? navigator.locks.request('parley.refresh', fn) : fn();
}

// Resolves once this tab holds a fresh token (and the live socket stands on it); rejects with
// {code:'unauthorized'} when the login is over, or another error to try again later.
export function refreshTokens() {
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
export function onStorage(e) {
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

export function startSession() {
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
  loadCapabilities();
  connect();
  api('GET', '/v1/me/profile').then((p) => { learnProfiles([p]); renderMe(); }, () => {});
  state.staff = tokenRoles().some((r) => r === 'admin' || r === 'moderator');
  $('staff-open').hidden = !state.staff;
}

// The token's roles claim (instance staff); only used to show the moderation page's link.
export function tokenRoles() {
  try {
    const claims = JSON.parse(atob(state.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return Array.isArray(claims.roles) ? claims.roles : [];
  } catch { return []; }
}

// The logout button: this login ends on the server too (its other tabs' sockets close 4003).
export function signOut() {
  const token = state.token;
  if (token) fetch('/v1/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  logout();
}

export function logout(message) {
  if (state.me) localStorage.removeItem(draftsKey());   // what was typed is not left for the next user
  for (const k of [STORE.token, STORE.user, STORE.name, STORE.refresh, STORE.expires]) localStorage.removeItem(k);
  closeSession(message);
}

// This tab's side of a logout: the socket, the timers and what the page holds (not the storage).
export function closeSession(message) {
  clearTimeout(state.refreshTimer);
  const ws = state.ws;
  state.ws = null;                 // cleared first so onclose does not schedule a reconnect
  if (ws) ws.close(1000);
  clearTimeout(state.reconnectTimer);
  stopHeartbeat();
  state.pending.clear();
  Object.assign(state, { token: null, me: null, selected: null, everConnected: false, backoff: 0, live: false, call: null });
  renderCallBar();
  for (const k of ['convs', 'msgs', 'loaded', 'loading', 'noOlder', 'outbox', 'typers', 'drafts', 'profiles',
    'presence', 'members', 'cursors', 'files', 'fileUrls']) state[k].clear();
  $('conv-list').replaceChildren();
  selectConv(null);
  showView('auth');
  setStatus('');
  showError('auth-error', message || '');
  document.title = 'Parley';
}

export function showView(name) {
  $('auth-view').hidden = name !== 'auth';
  $('chat-view').hidden = name !== 'chat';
  $('staff-view').hidden = name !== 'staff';
}

// ---------- WebSocket session ----------

export function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`);
  state.ws = ws;
  setStatus(state.everConnected ? 'Reconnecting…' : 'Connecting…');
  ws.onopen = () => onOpen(ws);
  ws.onmessage = (ev) => { if (ws === state.ws) onFrame(ev.data); };
  ws.onclose = (ev) => onClose(ws, ev);
}

export async function onOpen(ws) {
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

export function deviceId() {
  let id = localStorage.getItem(STORE.device);
  if (!id) localStorage.setItem(STORE.device, (id = newId()));
  return id;
}

export function onClose(ws, ev) {
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

export function startHeartbeat(seconds) {
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

export function stopHeartbeat() { clearInterval(state.heartbeat); state.heartbeat = null; }

// Sends one request and resolves with the ok frame, or rejects with the error frame.
export function request(op, fields) {
  return new Promise((resolve, reject) => {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return reject({ code: 'disconnected', message: 'not connected' });
    const rid = `r${++state.ridSeq}`;
    state.pending.set(rid, { resolve, reject, op });
    ws.send(JSON.stringify({ op, rid, ...fields }));
  });
}

export function onFrame(data) {
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
