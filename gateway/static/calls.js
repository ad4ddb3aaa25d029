// Calls: the call buttons, the call bar (ringing here, calling out, in the call) and call records.
// This page rings, calls, answers, declines and hangs up; it carries no audio or video: that needs
// LiveKit's client SDK, which it does not load (its Content-Security-Policy admits nothing from
// elsewhere, and the SDK is not vendored here). The `join` of call.start and call.join (LiveKit
// URL, token, ICE servers) is what an app hands that SDK. Wire contract: docs/protocol.md "Calls".
import { convLabel } from './conversations.js';
import { $, el, explain, fmtFull, fmtTime, setStatus, state } from './core.js';
import { displayName } from './people.js';
import { deviceId, request } from './session.js';

// Whether this server offers calls (it has a LiveKit): GET /v1/client/capabilities, asked once.
export async function loadCapabilities() {
  state.capabilities = await fetch('/v1/client/capabilities').then((r) => r.json()).catch(() => null);
  renderCallActions();
}

function callsOffered() { return !!state.capabilities?.features?.calls; }

export function renderCallActions() {
  for (const id of ['call-audio', 'call-video']) {
    $(id).hidden = !callsOffered() || !state.selected;
    $(id).disabled = !!state.call;   // one call at a time
  }
}

export function renderCallBar() {
  const c = state.call;
  $('call-bar').hidden = !c;
  renderCallActions();
  if (!c) return;
  const conv = state.convs.get(c.conv);
  const where = conv ? ` (${convLabel(conv)})` : '';
  // In a direct chat the caller is the conversation: its name once is enough.
  const from = `Incoming ${c.media} call from ${displayName(c.initiator)}${conv && conv.kind === 'direct' ? '' : where}`;
  $('call-text').textContent = c.mine === 'incoming' ? from : c.mine === 'outgoing' ? `Calling…${where}` : `In ${c.media} call${where}`;
  $('call-bar').className = c.mine;
  $('call-accept').hidden = $('call-decline').hidden = c.mine !== 'incoming';
  $('call-hangup').hidden = c.mine === 'incoming';
  $('call-hangup').textContent = c.mine === 'outgoing' ? 'Cancel' : 'Hang up';
  $('call-note').hidden = c.mine !== 'in';
}

// mine: 'incoming' (ringing here), 'outgoing' (ringing them) or 'in' (answered).
function showCall(call, mine) {
  const first = !state.call;
  state.call = { id: call.id || call.call, conv: call.conv, media: call.media, initiator: call.initiator, mine };
  renderCallBar();
  // A keyboard user reaches the answer at once; the bar is also a live region that says it.
  if (first && mine === 'incoming') $('call-accept').focus();
}

function endCall(message) {
  state.call = null;
  renderCallBar();
  if (message) setStatus(message);
}

export async function startCall(media) {
  try {
    const res = await request('call.start', { conv: state.selected, media });
    showCall(res.call, res.call.state === 'ringing' ? 'outgoing' : 'in');
  } catch (err) { setStatus(explain(err), 'error'); }
}

export async function answerCall() {
  const c = state.call;
  try {
    await request('call.join', { call: c.id });
    if (state.call && state.call.id === c.id) showCall(c, 'in');
  } catch (err) { endCall(explain(err)); }
}

export function declineCall() {
  request('call.decline', { call: state.call.id }).catch(() => {});
  endCall();
}

export function hangUp() {
  request('call.leave', { call: state.call.id }).catch(() => {});
  endCall();
}

// call.ringing, call.accepted, call.declined, call.left and call.ended; call.joined changes nothing here.
export function onCallEvent(ev) {
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
  if (ev.type === 'call.declined') setStatus(`${displayName(ev.user)} ${ev.busy ? 'is busy' : 'declined'}`);
}

// A finished call's entry in the history (a message of kind `call`): a line across the middle,
// with no sender or actions (it cannot be edited). A call missed here stands out; the caller's
// own unanswered call (sent as the caller) is only noted.
export function renderCallRecord(m) {
  const missedHere = !!(m.call && m.call.missed) && m.sender !== state.me;
  const div = el('article', 'msg call' + (missedHere ? ' missed' : ''));
  div.dataset.seq = m.seq;
  div.dataset.key = `msg-${m.seq}`;
  div.dataset.sender = m.sender;
  div.tabIndex = -1;
  div.setAttribute('aria-label', `${m.text || 'Call'}, ${fmtTime(m.ts)}`);
  // U+260E is in the common text fonts, unlike the emoji phones (the text says audio or video).
  const icon = el('span', 'call-icon', '\u260E');
  icon.setAttribute('aria-hidden', 'true');
  const time = el('time', 'msg-time', fmtTime(m.ts));
  time.dateTime = new Date(m.ts).toISOString();
  time.title = fmtFull(m.ts);
  div.append(icon, el('span', 'msg-text', m.text || 'Call'), time);
  return div;
}
