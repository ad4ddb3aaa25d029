// Messages: rendering, attachments, history, read state, sending, editing, reacting, mentions.
import { renderCallRecord } from './calls.js';
import { catchUp, keepDraft, may, noteLast, renderConvList } from './conversations.js';
import { $, api, button, el, EMOJI, explain, FILE_URL_KEEP_MS, fmtDay, fmtFull, fmtSize, fmtTime, nearBottom, newId, PAGE, scrollToBottom, setStatus, showError, state, TYPING_SEND_MS } from './core.js';
import { avatar, displayName, profile, wantProfile } from './people.js';
import { request } from './session.js';

// ---------- messages ----------

export function maxSeq(convId) {
  let max = 0;
  for (const seq of (state.msgs.get(convId) || new Map()).keys()) max = Math.max(max, seq);
  return max;
}

export function sortedMessages(convId) {
  return [...(state.msgs.get(convId) || new Map()).values()].sort((a, b) => a.seq - b.seq);
}

// Stores a message (new, edited or deleted: a later copy replaces an earlier one).
// Returns true when the (conv, seq) pair was new.
export function addMessage(m) {
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

export function cursorsOf(convId) {
  if (!state.cursors.has(convId)) state.cursors.set(convId, { read: new Map(), delivered: new Map() });
  return state.cursors.get(convId);
}

// The conversation is drawn again on a change (simple, and cheap for a few hundred messages),
// but only nodes that differ replace what is on screen: the live region announces just those,
// focus stays where it was, and loaded thumbnails are not fetched again.
export function renderMessages() {
  const convId = state.selected;
  const box = $('messages');
  const stick = nearBottom();
  const nodes = [];
  let day = '';
  let prev = null;
  const msgs = sortedMessages(convId);
  const lastMine = [...msgs].reverse().find((m) => m.sender === state.me && !m.deleted && m.kind !== 'call');
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
    // A call record stands alone: it neither joins nor starts a run of one sender's messages.
    const grouped = prev && prev.kind !== 'call' && m.kind !== 'call' && prev.sender === m.sender && m.ts - prev.ts < 5 * 60000;
    nodes.push(renderMessage(m, grouped, m === lastMine));
    prev = m;
  }
  reconcile(box, nodes);
  if (stick) scrollToBottom();
}

// Makes box's children equal to nodes (each with a unique data-key), keeping the present node of
// a key when it was drawn from the same data (data-sig, taken before any image loaded).
export function reconcile(box, nodes) {
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

export function renderMessage(m, grouped, showReceipt) {
  if (m.kind === 'call') return renderCallRecord(m);
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

export function renderQuote(convId, seq) {
  const q = state.msgs.get(convId)?.get(seq);
  const box = el('blockquote', 'quote');
  box.dataset.replyTo = seq;
  if (!q) { box.textContent = 'Reply to an earlier message'; return box; }
  box.append(el('strong', null, q.sender === state.me ? 'You' : displayName(q.sender)), ' ',
    el('span', null, q.deleted ? 'Message deleted' : (q.text || ((q.attachments || []).length ? 'Attachment' : ''))));
  return box;
}

// Mentioned names (@name) are highlighted; the text stays text (never HTML).
export function appendWithMentions(box, text, mentions) {
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

export function renderReceipt(m) {
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

export function renderActions(m) {
  const bar = el('div', 'msg-actions');
  const c = state.convs.get(m.conv);
  bar.append(button('Reply', null, () => startReply(m)), button('React', 'React to this message', (e) => openPicker(m, e.currentTarget)));
  if (m.sender === state.me) bar.append(button('Edit', null, () => startEdit(m)));
  if (m.sender === state.me || (c && may(m.conv, 'kick'))) bar.append(button('Delete', null, () => deleteMessage(m)));
  if (m.sender !== state.me) bar.append(button('Report', null, () => reportMessage(m)));
  return bar;
}

// ---------- attachments ----------

export function renderFiles(m) {
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
export function fileUrls(id) {
  const held = state.fileUrls.get(id);
  if (held && Date.now() - held.at < FILE_URL_KEEP_MS) return held.promise;
  const promise = api('GET', `/v1/attachments/${encodeURIComponent(id)}`);
  state.fileUrls.set(id, { at: Date.now(), promise });
  promise.catch(() => state.fileUrls.delete(id));
  return promise;
}

export async function download(id) {
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

export async function attachFiles(files) {
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

export function renderUploads() {
  $('upload-list').replaceChildren(...state.uploads.map((u) => {
    const li = el('li', 'chip', u.done ? u.name : `${u.name} (uploading…)`);
    li.append(button('×', `Remove ${u.name}`, () => { state.uploads = state.uploads.filter((x) => x !== u); renderUploads(); }));
    return li;
  }));
}

// ---------- history and read state ----------

export async function loadHistory(convId) {
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

export async function loadOlder() {
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

export function renderOlderButton() {
  const c = state.selected;
  const min = Math.min(...(state.msgs.get(c) || new Map()).keys());
  $('load-older').hidden = !c || !state.loaded.has(c) || state.noOlder.has(c) || !(min > 1);
}

// Tells the server we have seen the newest message of a conversation that is on screen.
// Debounced so a burst of incoming messages costs one read request.
export function markRead(convId) {
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

export function sendComposer() {
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
export function mentionedIds(text) {
  const ids = [];
  for (const u of (state.members.get(state.selected) || new Map()).keys()) {
    const p = profile(u);
    if (!p) continue;
    if ([p.username, p.display_name].filter(Boolean).some((n) => text.includes(`@${n}`))) ids.push(u);
  }
  return ids;
}

// Sends (or re-sends: the same cmid makes the server return the original seq) one outbox entry.
export async function trySend(cmid) {
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

export function dropPending(cmid) {
  const o = state.outbox.get(cmid);
  if (o) { o.el.remove(); state.outbox.delete(cmid); }
}

export function flushOutbox() { for (const cmid of state.outbox.keys()) trySend(cmid); }

export function startReply(m) {
  state.editing = null;
  state.replyTo = m.seq;
  renderReplyBar();
  $('composer').focus();
}

export function startEdit(m) {
  state.replyTo = null;
  state.editing = m.seq;
  $('composer').value = m.text || '';
  renderReplyBar();
  $('composer').focus();
}

export function renderReplyBar() {
  const m = state.selected && state.msgs.get(state.selected)?.get(state.replyTo || state.editing);
  $('reply-bar').hidden = !m;
  if (!m) return;
  const snippet = (m.text || 'attachment').slice(0, 80);
  $('reply-text').textContent = state.editing ? `Editing: ${snippet}` : `Replying to ${m.sender === state.me ? 'yourself' : displayName(m.sender)}: ${snippet}`;
}

export async function saveEdit(text) {
  const seq = state.editing;
  try {
    await request('edit', { conv: state.selected, seq, text });
    state.editing = null;
    $('composer').value = '';
    renderReplyBar();
  } catch (err) { showError('composer-error', `Not edited: ${explain(err)}`); }
}

export async function deleteMessage(m) {
  if (!confirm('Delete this message for everyone?')) return;
  try { await request('delete', { conv: m.conv, seq: m.seq }); } catch (err) { showError('composer-error', `Not deleted: ${explain(err)}`); }
}

export async function react(m, emoji, on) {
  try { await request('react', { conv: m.conv, seq: m.seq, emoji, on }); } catch (err) { showError('composer-error', explain(err)); }
}

export async function reportMessage(m) {
  const reason = prompt('Why are you reporting this message?');
  if (!reason || !reason.trim()) return;
  try {
    await api('POST', '/v1/reports', { kind: 'message', conv: m.conv, seq: m.seq, reason: reason.trim().slice(0, 512) });
    setStatus('Thank you: the report was sent to the moderators.');
  } catch (err) { showError('composer-error', `Report not sent: ${explain(err)}`); }
}

export function openPicker(m, anchor) {
  const picker = $('emoji-picker');
  picker.replaceChildren(...EMOJI.map((e) => button(e, `React with ${e}`, () => { closePicker(); react(m, e, true); }, 'emoji')));
  picker.hidden = false;
  const r = anchor.getBoundingClientRect();
  picker.style.setProperty('--top', `${Math.max(8, r.top - 110)}px`);
  picker.style.setProperty('--left', `${Math.max(8, Math.min(window.innerWidth - 260, r.left - 200))}px`);
  picker.dataset.returnTo = m.seq;
  picker.querySelector('button').focus();
}

export function closePicker() {
  const picker = $('emoji-picker');
  if (picker.hidden) return;
  picker.hidden = true;
  const msg = $('messages').querySelector(`.msg[data-seq="${picker.dataset.returnTo}"] .msg-actions button`);
  if (msg) msg.focus();
}

// ---------- mentions autocomplete ----------

export function mentionQuery() {
  const box = $('composer');
  const before = box.value.slice(0, box.selectionStart);
  const match = /(^|\s)@([^\s@]{0,32})$/.exec(before);
  return match ? match[2].toLowerCase() : null;
}

export function renderMentions() {
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

export function insertMention(u) {
  const box = $('composer');
  const at = box.selectionStart;
  const before = box.value.slice(0, at).replace(/@([^\s@]{0,32})$/, `@${profile(u).username} `);
  box.value = before + box.value.slice(at);
  box.selectionStart = box.selectionEnd = before.length;
  $('mention-results').hidden = true;
  box.focus();
}

export function onComposerInput() {
  if (state.selected) keepDraft(state.selected, $('composer').value);
  showError('composer-error', '');
  renderMentions();
  const now = Date.now();
  if (!state.selected || now - state.lastTypingSent < TYPING_SEND_MS) return;
  state.lastTypingSent = now;
  request('typing', { conv: state.selected }).catch(() => {});
}
