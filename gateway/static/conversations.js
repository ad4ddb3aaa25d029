// The conversation list, the conversation header and the members panel.
import { renderCallActions, renderCallBar } from './calls.js';
import { $, aRole, button, el, explain, fmtListTime, fmtUntil, MUTE_END_SLACK_MS, NEEDS, ROLE_RANK, ROLES, scrollToBottom, setStatus, showError, state, STORE, toMs, untilSuffix } from './core.js';
import { renderTyping } from './events.js';
import { addMessage, loadHistory, markRead, maxSeq, renderMessages, renderOlderButton, renderReplyBar, renderUploads } from './messages.js';
import { avatar, displayName, learnProfiles, profile, wantProfile } from './people.js';
import { request } from './session.js';

// ---------- conversations ----------

export async function refreshConvs() {
  const res = await request('conv.list', {}).catch(() => null);
  if (res) {
    learnProfiles(res.profiles);
    for (const c of res.convs || []) upsertConv(c);
  }
  renderConvList();
}

// Merges a conv object from the server; keeps local-only fields. The list is ordered by the
// newest message (`last_message.ts`), by `created_at` only while a conversation has none.
export function upsertConv(c) {
  const old = state.convs.get(c.id) || {};
  const merged = { ...old, ...c };
  if ('last_message' in c) merged.last = c.last_message;
  merged.lastTs = Math.max(old.lastTs || 0, merged.last ? toMs(merged.last.ts) : toMs(c.created_at));
  if (c.peer) wantProfile(c.peer);
  state.convs.set(c.id, merged);
}

// Asks who of the people on screen is online (presence events keep it current afterwards).
export function askPresence() {
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
export async function resync() {
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
export async function catchUp(convId, after) {
  const limit = state.limits.history_max || 200;
  const res = await request('history', { conv: convId, after, limit }).catch(() => null);
  if (!res) return;
  if ((res.messages || []).length >= limit) return resetConv(convId);
  res.messages.forEach(addMessage);
  if (convId === state.selected) renderMessages();
}

export function resetConv(convId) {
  state.msgs.delete(convId);
  state.loaded.delete(convId);
  state.noOlder.delete(convId);
  if (state.selected === convId) { $('messages').replaceChildren(); loadHistory(convId); }
}

export function convLabel(c) {
  if (c.title) return c.title;
  if (c.kind === 'direct') return c.peer ? displayName(c.peer) : 'Direct chat (they left)';
  return c.kind === 'channel' ? 'Untitled channel' : 'Untitled group';
}

export function convPreview(c) {
  const m = c.last;
  if (!m) return 'No messages yet';
  const who = m.sender === state.me ? 'You' : (c.kind === 'direct' ? '' : displayName(m.sender));
  const text = m.deleted ? 'Message deleted' : (m.preview || (m.attachments ? `${m.attachments} attachment${m.attachments > 1 ? 's' : ''}` : ''));
  return who ? `${who}: ${text}` : text;
}

// Keeps the list entry's preview in step with live messages (conv.list gave the first one).
export function noteLast(m) {
  const c = state.convs.get(m.conv);
  if (!c || (c.last && c.last.seq > m.seq)) return;
  const files = (m.attachments || []).length;
  c.last = { seq: m.seq, ts: m.ts, sender: m.sender, deleted: !!m.deleted, attachments: files,
             preview: m.deleted ? null : ((m.text || '').replace(/\s+/g, ' ').trim().slice(0, 140) || null) };
  c.lastTs = Math.max(c.lastTs || 0, m.ts || 0);
}

export function renderConvList() {
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

export function groupAvatar(c) {
  const box = el('span', 'avatar group', (convLabel(c).trim().charAt(0) || '#').toUpperCase());
  box.setAttribute('aria-hidden', 'true');
  return box;
}

// The tab title counts unread messages, so a background tab shows there is news.
export function renderTitle() {
  let unread = 0;
  for (const c of state.convs.values()) unread += c.unread || 0;
  document.title = unread ? `(${unread}) Parley` : 'Parley';
}

export function renderHeader() {
  const c = state.selected && state.convs.get(state.selected);
  $('conv-title').textContent = c ? convLabel(c) : (state.selected ? 'Conversation' : 'No conversation selected');
  const topic = (c && c.kind !== 'direct' && c.topic) || '';
  $('conv-topic').textContent = topic;
  $('conv-topic').hidden = !topic;
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
  renderCallActions();
}

export function renderMe() {
  const p = profile(state.me);
  $('my-name').textContent = p ? (p.display_name || p.username) : (localStorage.getItem(STORE.name) || '');
  $('my-avatar').replaceChildren(avatar(state.me));
}

export function renderAll() {
  renderMe();
  renderConvList();
  if (state.selected) { renderMessages(); renderMembers(); }
  renderTyping();
  renderCallBar();
  renderComposer();
}

// Drafts outlive a reload: kept per account in localStorage (only text; files are not kept).
export function draftsKey() { return `parley.drafts.${state.me}`; }

export function loadDrafts() {
  try { state.drafts = new Map(Object.entries(JSON.parse(localStorage.getItem(draftsKey()) || '{}'))); }
  catch { state.drafts = new Map(); }
}

export function keepDraft(convId, text) {
  if (text.trim()) state.drafts.set(convId, text); else state.drafts.delete(convId);
  localStorage.setItem(draftsKey(), JSON.stringify(Object.fromEntries(state.drafts)));
}

export function selectConv(convId) {
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
  renderComposer();
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

// The composer says why it is off: channel subscribers read only, a muted member waits.
export function renderComposer() {
  const convId = state.selected;
  const c = convId && state.convs.get(convId);
  const readOnly = !!c && c.kind === 'channel' && (ROLE_RANK[myRole(convId)] || 0) < ROLE_RANK.admin;
  const muted = !!c && !!c.muted && (c.muted.until == null || c.muted.until > Date.now());
  $('composer').disabled = $('send').disabled = $('attach').disabled = !convId || readOnly || muted;
  $('composer').placeholder = readOnly ? 'Only admins post in this channel'
    : muted ? `You are muted ${fmtUntil(c.muted.until)}` : 'Write a message';
}

// My own mute in a conversation, from a live event or (after a reload) from my entry in
// conv.members; undefined: not muted. A mute that ends by time sends no event, so a timer draws
// the composer again then (a little after: the server lets a send through from `until` on).
export function setMyMute(convId, until) {
  const c = state.convs.get(convId);
  if (!c) return;
  if (until === undefined) delete c.muted;
  else {
    c.muted = { until };
    if (until != null) setTimeout(renderComposer, Math.min(Math.max(0, until - Date.now()) + MUTE_END_SLACK_MS, 2 ** 31 - 1));
  }
  renderComposer();
}

// A conversation's members with their profiles (for names, roles, presence and the panel), and
// its mutes and bans when my role may lift them.
export async function loadMembers(convId) {
  const members = new Map();
  let after;
  let sanctions = null;
  try {
    for (;;) {
      const res = await request('conv.members', { conv: convId, ...(after ? { after } : {}) });
      learnProfiles(res.profiles);
      for (const m of res.members) members.set(m.user, m);
      if (!res.more || !res.members.length) break;
      after = res.members[res.members.length - 1].user;
    }
    if (may(convId, 'mute') || may(convId, 'ban')) {
      const res = await request('conv.sanctions', { conv: convId });
      learnProfiles(res.profiles);
      const byUser = (list) => new Map(list.map((s) => [s.user, s]));
      sanctions = { mutes: byUser(res.mutes), bans: byUser(res.bans) };
    }
  } catch { return; }
  state.members.clear();   // only the conversation on screen is kept
  state.members.set(convId, members);
  const mine = members.get(state.me);
  if (mine) setMyMute(convId, 'muted_until' in mine ? mine.muted_until : undefined);
  state.sanctions.clear();
  if (sanctions) state.sanctions.set(convId, sanctions);
  if (state.selected === convId) { renderAll(); askPresence(); }
}

export function myRole(convId) {
  const c = state.convs.get(convId);
  return (c && c.role) || 'member';
}

export function may(convId, action, target) {
  const c = state.convs.get(convId);
  if (!c || c.kind === 'direct') return false;
  const mine = ROLE_RANK[myRole(convId)] || 0;
  if (mine < ROLE_RANK[NEEDS[action]]) return false;
  return target === undefined || mine > (ROLE_RANK[target] || 0);
}

export function renderMembers() {
  const convId = state.selected;
  const c = state.convs.get(convId);
  const members = state.members.get(convId) || new Map();
  const { mutes, bans } = state.sanctions.get(convId) || { mutes: new Map(), bans: new Map() };
  $('rename-form').hidden = $('topic-form').hidden = !c || !may(convId, 'set_info');
  $('invite-form').hidden = !c || !may(convId, 'invite');
  $('leave-conv').hidden = !c || c.kind === 'direct';
  if (c && document.activeElement !== $('rename-title')) $('rename-title').value = c.title || '';
  if (c && document.activeElement !== $('topic-text')) $('topic-text').value = c.topic || '';
  const rows = [...members.values()].sort((a, b) => (ROLE_RANK[b.role] - ROLE_RANK[a.role]) || displayName(a.user).localeCompare(displayName(b.user)));
  $('member-list').replaceChildren(...rows.map((m) => {
    const mute = mutes.get(m.user);
    const li = personRow(m.user, [m.role !== 'member' ? m.role : '', mute ? `muted ${fmtUntil(mute.until)}` : '',
      state.presence.get(m.user) || '']);
    if (m.user !== state.me) {
      const acts = el('span', 'member-actions');
      const name = displayName(m.user);
      if (may(convId, 'mute', m.role)) {
        acts.append(mute ? button('Unmute', `Unmute ${name}`, () => moderate('member.unmute', m.user, `${name} may write again.`))
          : button('Mute', `Mute ${name}`, () => askMute(m.user, name)));
      }
      acts.append(...roleButtons(convId, m, name));
      if (may(convId, 'kick', m.role)) acts.append(button('Remove', `Remove ${name}`, () => confirm(`Remove ${name} from the conversation?`) && moderate('member.kick', m.user, `${name} was removed.`)));
      if (may(convId, 'ban', m.role)) acts.append(button('Ban', `Ban ${name}`, () => confirm(`Ban ${name} from the conversation?`) && moderate('member.ban', m.user, `${name} is banned.`)));
      li.append(acts);
    }
    return li;
  }));
  // Banned people are not members: listed apart, for those who may lift a ban.
  $('banned').hidden = !bans.size;
  $('banned-list').replaceChildren(...[...bans.values()].map((b) => {
    const name = displayName(b.user);
    const li = personRow(b.user, [`banned ${fmtUntil(b.until)}`, b.reason || '']);
    const acts = el('span', 'member-actions');
    acts.append(button('Unban', `Unban ${name}`, () => moderate('member.unban', b.user, `${name} may come back.`)));
    li.append(acts);
    return li;
  }));
}

// One person in the panel: picture, name and a line of facts about them.
function personRow(user, facts) {
  const li = el('li', 'member');
  li.dataset.userId = user;
  const names = el('span', 'person-names');
  names.append(el('span', 'person-name', displayName(user) + (user === state.me ? ' (you)' : '')),
    el('span', 'hint', facts.filter(Boolean).join(' · ')));
  li.append(avatar(user), names);
  return li;
}

// One step up or down the roles: up only below my own (the server refuses more: role_too_high).
// The owner may also hand ownership over (member.role "owner"; they stay on as an admin).
function roleButtons(convId, m, name) {
  if (!may(convId, 'manage_roles', m.role)) return [];
  const rank = ROLE_RANK[m.role] || 0;
  const out = [];
  if (myRole(convId) === 'owner') {
    out.push(button('Hand over', `Hand over ownership to ${name}`, () => confirm(
      `Hand ownership of “${convLabel(state.convs.get(convId))}” to ${name}? You will stay on as an admin and cannot take it back yourself.`)
      && moderate('member.role', m.user, `${name} is now the owner; you are an admin.`, { role: 'owner' })));
  }
  const up = ROLES[rank + 1];
  if (rank + 1 < ROLE_RANK[myRole(convId)]) {
    out.push(button('Promote', `Promote ${name} to ${up}`, () => moderate('member.role', m.user, `${name} is now ${aRole(up)}.`, { role: up })));
  }
  if (rank > 0) {
    const down = ROLES[rank - 1];
    out.push(button('Demote', `Demote ${name} to ${down}`, () => moderate('member.role', m.user, `${name} is now ${aRole(down)}.`, { role: down })));
  }
  return out;
}

// Mute asks for how long first (the dialog's choices are member.mute's duration_s; none: until
// unmuted) and for an optional reason shown to the members.
function askMute(user, name) {
  state.muting = { user, name };
  $('mute-title').textContent = `Mute ${name}`;
  $('mute-form').reset();
  $('mute-dialog').showModal();
}

export function submitMute() {
  const target = state.muting;
  if (!target) return;
  const seconds = Number($('mute-duration').value);
  const reason = $('mute-reason').value.trim();
  moderate('member.mute', target.user, (res) => `${target.name} is muted${untilSuffix(res.until)}.`,
    { ...(seconds ? { duration_s: seconds } : {}), ...(reason ? { reason } : {}) });
}

// One action on a member; `done` is the status line after it (or makes it from the answer).
export async function moderate(op, user, done, fields) {
  const convId = state.selected;
  showError('members-error', '');
  try {
    const res = await request(op, { conv: convId, user, ...fields });
    setStatus(typeof done === 'function' ? done(res) : done);
    loadMembers(convId);
  } catch (err) { showError('members-error', explain(err)); }
}

// A settings change from the panel (name, topic): the answer's conv object is shown at once.
export async function updateConv(fields, done) {
  showError('members-error', '');
  try {
    const res = await request('conv.update', { conv: state.selected, ...fields });
    upsertConv(res.conv);
    renderAll();
    if (done) setStatus(done);
  } catch (err) { showError('members-error', explain(err)); }
}

export async function createConv(fields, form, errorId) {
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
