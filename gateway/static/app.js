// Parley web client, its entry module: wires the page's controls and starts the session.
// Plain ES modules, no build step, nothing loaded from the internet (why: docs/adr/0005-web-client.md).
// Wire contract: docs/protocol.md (REST /v1/*, WebSocket /v1/ws, JSON frames).
import { answerCall, declineCall, hangUp, startCall } from './calls.js';
import { createConv, loadMembers, renderAll, renderMembers, selectConv, submitMute, updateConv } from './conversations.js';
import { $, api, button, el, explain, setStatus, showError, state } from './core.js';
import { attachFiles, closePicker, insertMention, loadOlder, markRead, onComposerInput, renderReplyBar, sendComposer } from './messages.js';
import { learnProfiles, peoplePicker, profile } from './people.js';
import { authenticate, onStorage, request, showView, signOut, startSession } from './session.js';
import { findUsers, loadReports } from './staff.js';

// ---------- UI wiring ----------

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
  $('rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    updateConv({ title: $('rename-title').value.trim() || null });
  });
  $('topic-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const topic = $('topic-text').value.trim();   // empty clears it
    updateConv({ topic }, topic ? 'Topic saved.' : 'Topic cleared.');
  });
  // method="dialog": submitting closes the dialog, and Escape or Cancel closes it without muting.
  $('mute-form').addEventListener('submit', submitMute);
  $('mute-cancel').addEventListener('click', () => $('mute-dialog').close());
  $('mute-dialog').addEventListener('close', () => { state.muting = null; });
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

  $('call-audio').addEventListener('click', () => startCall('audio'));
  $('call-video').addEventListener('click', () => startCall('video'));
  $('call-accept').addEventListener('click', answerCall);
  $('call-decline').addEventListener('click', declineCall);
  $('call-hangup').addEventListener('click', hangUp);

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
