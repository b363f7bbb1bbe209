// The page: a hash router (#/cases, #/cases/N, #/devices, #/devices/ID,
// #/play/DEVICE/RECORDING, #/audit, #/login), the navigation by role, the
// language switch. Pages are in pages.js; everything is built with DOM
// calls (h), never from HTML strings, so no data can become markup.

import { api, ApiError } from './api.js';
import { t, lang, setLang } from './i18n.js';
import * as pages from './pages.js';

/** An element: `h('button', {type: 'button', onclick: f}, 'text', child…)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The signed-in user (`{user, role}`), or null. */
export let me = null;

/** Roles that read the access log. */
export const AUDITORS = ['custodian', 'supervisor', 'admin'];

/** Go to `hash` (e.g. `#/cases`). */
export function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

let stopCurrent = null;

/** Register what stops the current page's timers and players. */
export function onLeave(f) { stopCurrent = f; }

async function whoAmI() {
  try { me = await api('/api/me'); } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) throw e;
    me = null;
  }
}

function nav() {
  const n = document.getElementById('nav');
  n.replaceChildren();
  document.getElementById('who').textContent = me ? `${me.user} (${me.role})` : '';
  if (!me) return;
  const link = (hash, key) => h('a', { href: hash, 'aria-current': location.hash.startsWith(hash) ? 'page' : null }, t(key));
  n.append(link('#/cases', 'cases'));
  n.append(link('#/devices', 'devices'));
  if (AUDITORS.includes(me.role)) n.append(link('#/officers', 'officers'));
  if (AUDITORS.includes(me.role)) n.append(link('#/audit', 'audit'));
  n.append(h('button', { type: 'button', id: 'logout', onclick: logout }, t('logout')));
}

async function logout() {
  try { await api('/api/logout', { method: 'POST' }); } catch { /* gone already */ }
  me = null;
  go('#/login');
}

function chrome() {
  document.title = `fieldseal — ${t('title')}`;
  document.getElementById('brand').textContent = `fieldseal · ${t('title')}`;
  const b = document.getElementById('lang');
  b.textContent = t('switchTo');
  b.setAttribute('aria-label', t('switchLabel'));
  document.getElementById('skip').textContent = t('skip');
  nav();
}

/** Render the page the hash names. */
export async function route() {
  if (stopCurrent) { stopCurrent(); stopCurrent = null; }
  const main = document.getElementById('main');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (!me && parts[0] !== 'login') await whoAmI();
  chrome();
  if (!me) { main.replaceChildren(pages.login()); return; }
  main.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  try {
    const view = await pageFor(parts);
    main.replaceChildren(view);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { me = null; chrome(); main.replaceChildren(pages.login()); return; }
    main.replaceChildren(pages.failure(e));
  }
  main.focus({ preventScroll: true });
}

function pageFor([what, a, b]) {
  switch (what) {
    case 'cases': return a ? pages.casePage(a) : pages.cases();
    case 'devices': return a ? pages.devicePage(a) : pages.devices();
    case 'play': return pages.playPage(a, b);
    case 'audit': return pages.audit();
    case 'officers': return pages.officers();
    default: return pages.cases();
  }
}

/** After a login: who, then the page asked for. */
export async function loggedIn() {
  await whoAmI();
  if (location.hash === '' || location.hash.startsWith('#/login')) go('#/cases'); else route();
}

addEventListener('hashchange', route);
document.getElementById('lang').addEventListener('click', () => {
  setLang(lang() === 'zh' ? 'en' : 'zh');
  route().then(() => document.getElementById('lang').focus());
});
document.getElementById('skip').addEventListener('click', () => document.getElementById('main').focus());
setLang(lang());
route();
