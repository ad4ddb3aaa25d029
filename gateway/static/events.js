// Server events: what each one changes on screen.
import { catchUp, convLabel, loadMembers, noteLast, refreshConvs, renderAll, renderConvList, resync, selectConv, setMyMute, upsertConv } from './conversations.js';
import { onCallEvent } from './calls.js';
import { $, aRole, setStatus, state, TYPING_SHOW_MS, untilSuffix } from './core.js';
import { addMessage, cursorsOf, markRead, maxSeq, renderMessages } from './messages.js';
import { displayName, learnProfiles } from './people.js';
import { request } from './session.js';

// ---------- events ----------

export function handleEvent(ev) {
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
    case 'member.joined': case 'member.updated': case 'member.banned': case 'member.unbanned':
    case 'member.muted': case 'member.unmuted':
      // by me: only a handover (moderation never acts on oneself), told by its own button
      if (ev.user === state.me && ev.by && ev.by !== state.me) onModeratedMe(ev);
      if (ev.conv === state.selected) loadMembers(ev.conv);
      return renderConvList();
    case 'member.left':
      if (ev.user === state.me) {
        if (state.convs.has(ev.conv)) state.leftConvs.set(ev.conv, convLabel(state.convs.get(ev.conv)));
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
    case 'call.ringing': case 'call.accepted': case 'call.declined': case 'call.left': case 'call.ended':
      return onCallEvent(ev);
    default: return;   // pins and call.joined: not shown by this client
  }
}

// What someone did to me: said in the status line; a mute also turns my composer off until it ends.
const TOLD = {
  'member.muted': (name, ev) => `You were muted in “${name}”${untilSuffix(ev.until)}.`,
  'member.unmuted': (name) => `You may write in “${name}” again.`,
  'member.banned': (name, ev) => `You were banned from “${name}”${untilSuffix(ev.until)}.`,
  'member.unbanned': (name) => `Your ban from “${name}” was lifted.`,
  'member.updated': (name, ev) => `You are now ${aRole(ev.role)} in “${name}”.`,
};

export function onModeratedMe(ev) {
  const c = state.convs.get(ev.conv);
  if (!TOLD[ev.type]) return;
  if (ev.type === 'member.muted') setMyMute(ev.conv, ev.until);
  if (ev.type === 'member.unmuted') setMyMute(ev.conv, undefined);
  setStatus(TOLD[ev.type](c ? convLabel(c) : (state.leftConvs.get(ev.conv) || 'a conversation'), ev));
}

export function refreshView(convId) {
  if (convId === state.selected) renderMessages();
  renderConvList();
}

export function onMessageNew(ev) {
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

export function onReaction(ev) {
  const m = state.msgs.get(ev.conv)?.get(ev.seq);
  if (!m) return;
  const reactions = { ...(m.reactions || {}) };
  const users = new Set(reactions[ev.emoji] || []);
  if (ev.on) users.add(ev.user); else users.delete(ev.user);
  reactions[ev.emoji] = [...users];
  m.reactions = reactions;
  refreshView(ev.conv);
}

export function onRead(ev) {
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

export function notify(m) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const c = state.convs.get(m.conv);
  const title = c && c.kind !== 'direct' ? `${displayName(m.sender)} in ${convLabel(c)}` : displayName(m.sender);
  const n = new Notification(title, { body: m.text || 'Sent an attachment', tag: m.conv });
  n.onclick = () => { window.focus(); selectConv(m.conv); n.close(); };
}

export function onTyping(ev) {
  if (ev.user === state.me) return;
  if (!state.typers.has(ev.conv)) state.typers.set(ev.conv, new Map());
  const t = state.typers.get(ev.conv);
  clearTimeout(t.get(ev.user));
  t.set(ev.user, setTimeout(() => clearTyping(ev.conv, ev.user), TYPING_SHOW_MS));
  renderTyping();
}

export function clearTyping(convId, user) {
  const t = state.typers.get(convId);
  if (!t || !t.has(user)) return;
  clearTimeout(t.get(user));
  t.delete(user);
  renderTyping();
}

export function renderTyping() {
  const users = [...(state.typers.get(state.selected) || new Map()).keys()].map(displayName);
  $('typing').textContent = users.length ? `${users.join(', ')} ${users.length > 1 ? 'are' : 'is'} typing…` : '';
}
