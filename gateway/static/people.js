// People: profiles (names, avatars, presence dots) and the directory search box.
import { renderAll } from './conversations.js';
import { $, api, el, explain, SEARCH_DELAY_MS, showError, state } from './core.js';

// ---------- people ----------

export function profile(id) { return state.profiles.get(id); }

export function displayName(id) {
  if (!id) return '';
  const p = profile(id);
  if (!p) { wantProfile(id); return 'someone'; }
  return p.display_name || p.username || id;
}

export function learnProfiles(list) {
  let changed = false;
  for (const p of Array.isArray(list) ? list : Object.values(list || {})) {
    if (p && p.id) { state.profiles.set(p.id, p); state.wantProfiles.delete(p.id); changed = true; }
  }
  return changed;
}

// Unknown people are fetched in one batch (GET /v1/users?ids=) after the current render.
export function wantProfile(id) {
  if (state.profiles.has(id) || state.wantProfiles.has(id)) return;
  state.wantProfiles.add(id);
  clearTimeout(state.profileTimer);
  state.profileTimer = setTimeout(fetchProfiles, 30);
}

export async function fetchProfiles() {
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

export function avatar(id, size) {
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
export function peoplePicker(input, list, errorId, pick) {
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
