// The staff moderation page on the admin API: reports queue and user lookup.
import { $, api, button, el, explain, fmtFull, setStatus, showError } from './core.js';

// ---------- staff: reports queue and user lookup (admin API) ----------

export async function loadReports() {
  showError('reports-error', '');
  try {
    const res = await api('GET', `/v1/admin/reports?status=${$('report-status').value}&limit=50`);
    $('report-list').replaceChildren(...res.reports.map(renderReport));
    if (!res.reports.length) $('report-list').append(el('li', 'hint', 'Nothing here.'));
  } catch (err) { showError('reports-error', explain(err)); }
}

export function renderReport(r) {
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

export async function findUsers() {
  showError('users-error', '');
  const q = $('user-q').value.trim();
  if (!q) return showError('users-error', 'Type a username or an id.');
  try {
    const res = await api('GET', `/v1/admin/users?q=${encodeURIComponent(q)}&limit=20`);
    $('user-results').replaceChildren(...res.users.map(renderAccount));
    if (!res.users.length) showError('users-error', `Nobody found for “${q}”.`);
  } catch (err) { showError('users-error', explain(err)); }
}

export function renderAccount(a) {
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
