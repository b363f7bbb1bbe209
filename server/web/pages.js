// The pages. Each returns an element (or a promise of one); what a role
// may not read the API refuses, and the page shows what it was given.

import { api, ApiError } from './api.js';
import { h, me, onLeave, loggedIn, AUDITORS } from './app.js';
import { t, lang, fmtTime, fmtPrecise } from './i18n.js';
import { timeline, legend } from './timeline.js';
import { attach, parsePlaylist, segmentAt } from './player.js';

const STAGES = ['start', 'investigation', 'review', 'decision', 'service', 'execution'];
const enc = encodeURIComponent;

/** What went wrong, for people. */
export function failure(e) {
  const msg = e instanceof ApiError && e.status === 404 ? t('notFound')
    : e instanceof ApiError && e.status === 403 ? t('forbidden')
      : t('error', e.message);
  return h('p', { role: 'alert', class: 'error' }, msg);
}

export function login() {
  const err = h('p', { role: 'alert', class: 'error', id: 'login-error' });
  const user = h('input', { id: 'user', name: 'user', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'login', onsubmit: async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api('/api/login', { method: 'POST', body: { user: user.value, password: pass.value } });
      await loggedIn();
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 429 ? t('throttled') : t('loginFailed');
      pass.select();
    }
  } },
  h('h1', {}, t('login')),
  h('label', { for: 'user' }, t('user')), user,
  h('label', { for: 'password' }, t('password')), pass,
  h('button', { type: 'submit', id: 'login-submit' }, t('login')), err);
  setTimeout(() => user.focus(), 0);
  return form;
}

function badge(c) {
  if (!c) return h('span', { class: 'badge unknown' }, '—');
  const n = c.activities.reduce((k, a) => k + a.verdict.findings.length, 0) + c.missing_stages.length;
  return c.compliant
    ? h('span', { class: 'badge ok', 'data-compliant': 'true' }, t('compliant'))
    : h('span', { class: 'badge bad', 'data-compliant': 'false' }, `${t('notCompliant')} · ${t('findingsN', n)}`);
}

export async function cases() {
  const list = await api('/api/cases');
  const verdicts = await Promise.all(list.map((c) => api(`/api/cases/${enc(c.number)}/compliance`).catch(() => null)));
  const rows = list.map((c, i) => h('tr', {},
    h('td', {}, h('a', { href: `#/cases/${enc(c.number)}`, class: 'case-link' }, c.number)),
    h('td', {}, c.body), h('td', {}, c.officers.join(', ')), h('td', {}, badge(verdicts[i]))));
  return h('section', {}, h('h1', {}, t('cases')),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, t('number')), h('th', {}, t('body')),
      h('th', {}, t('officers')), h('th', {}, t('compliance')))), h('tbody', {}, rows)));
}

function stages(c, comp) {
  const items = STAGES.map((k) => {
    const recs = c.stages.filter((s) => s.kind === k);
    const missing = comp && comp.missing_stages.includes(k);
    return h('li', { class: missing ? 'stage missing' : recs.length ? 'stage done' : 'stage' },
      h('strong', {}, t(`stage.${k}`)), ' ',
      recs.length ? recs.map((s) => h('span', {}, `${fmtTime(s.at_us)} — ${s.text} (${s.by})`))
        : h('span', { class: missing ? 'error' : 'muted' }, missing ? t('stageMissing') : t('stageNotYet')));
  });
  return h('section', {}, h('h2', {}, t('stages')), h('ol', { class: 'stages' }, items));
}

function findingText(f) {
  const why = f.explained_by ? t('explainedBy', f.explained_by.reason, f.explained_by.device, f.explained_by.seq)
    : f.kind === 'uncovered' ? t('unexplained') : '';
  return `${f.kind}: ${fmtTime(f.from_us)} – ${fmtTime(f.to_us)}. ${f.detail}${why ? ` — ${why}` : ''}`;
}

function recordingsTable(a) {
  const rows = a.covered.map((r) => h('tr', {},
    h('td', {}, h('a', { href: `#/devices/${r.device}` }, r.device)),
    h('td', {}, `#${r.first_seq}–${r.last_seq}`),
    h('td', {}, `${fmtTime(r.start_us)} – ${fmtTime(r.end_us)}`),
    h('td', {}, h('span', { class: r.verified ? 'badge ok' : 'badge bad' }, r.verified ? t('verified') : t('notVerified'))),
    h('td', {}, h('a', { class: 'button play', href: `#/play/${r.device}/${r.recording}` }, t('play')))));
  return h('table', { class: 'recordings' }, h('thead', {}, h('tr', {}, h('th', {}, t('device')), h('th', {}, t('seqs')),
    h('th', {}, t('time')), h('th', {}, t('verified')), h('th', {}, t('player')))), h('tbody', {}, rows));
}

function activity(a, names) {
  const name = names[a.kind] || a.kind;
  return h('section', { class: 'activity', 'data-activity': a.id },
    h('h3', {}, `${name} (${a.id}) `, badge({ compliant: a.verdict.compliant, activities: [a], missing_stages: [] })),
    h('p', {}, `${t('requirement')}: ${t(`req.${a.verdict.requirement}`)} · ${t('window')}: ${fmtTime(a.start_us)} – ${fmtTime(a.end_us)}`),
    timeline(a), legend(),
    h('h4', {}, t('findings')),
    a.verdict.findings.length
      ? h('ul', { class: 'findings' }, a.verdict.findings.map((f) => h('li', { class: `finding ${f.kind}${f.kind === 'uncovered' && !f.explained_by ? ' unexplained' : ''}` }, findingText(f))))
      : h('p', {}, t('none')),
    h('h4', {}, t('recordings')), recordingsTable(a));
}

export async function casePage(number) {
  const [c, comp, cat] = await Promise.all([
    api(`/api/cases/${enc(number)}`),
    api(`/api/cases/${enc(number)}/compliance`).catch(() => null),
    api('/api/catalogue').catch(() => ({ activity: [] })),
  ]);
  const names = Object.fromEntries(cat.activity.map((x) => [x.id, lang() === 'zh' ? x.name_zh : x.name_en]));
  const download = h('a', { class: 'button', id: 'export', href: `/api/cases/${enc(number)}/export`, download: `${number}.fieldseal` }, t('exportCase'));
  return h('article', {},
    h('h1', {}, `${t('number')} ${c.number} `, badge(comp)),
    h('dl', {}, h('dt', {}, t('body')), h('dd', {}, c.body), h('dt', {}, t('officers')), h('dd', {}, c.officers.join(', ')),
      h('dt', {}, t('major')), h('dd', {}, c.major ? '✔' : '—')),
    // Exporting evidence is the custodian's (the API refuses others).
    me.role === 'custodian' ? h('p', {}, download) : null,
    stages(c, comp),
    h('section', {}, h('h2', {}, t('activities')), comp ? comp.activities.map((a) => activity(a, names)) : h('p', {}, t('none'))));
}

export async function devices() {
  const list = await api('/api/devices');
  const rows = list.map((d) => h('tr', {},
    h('td', {}, h('a', { href: `#/devices/${d.id}` }, d.name)), h('td', {}, h('code', {}, d.id)),
    h('td', {}, d.revoked_us ? t('revoked') : d.connected ? t('connected') : t('offline')),
    h('td', {}, fmtTime(d.last_receipt_us)), h('td', {}, d.entries)));
  return h('section', {}, h('h1', {}, t('devices')), h('table', {}, h('thead', {}, h('tr', {},
    h('th', {}, t('name')), h('th', {}, t('device')), h('th', {}, t('connected')), h('th', {}, t('lastSent')),
    h('th', {}, t('entriesN')))), h('tbody', {}, rows)));
}

/**
 * Where an entry says the device was, in words: a place `{status: 'fix',
 * lat, lon (decimal text), accuracy (m, null: unknown), fixMs (null: not
 * recorded)}`, `{status: 'no-fix', noFix}`, or null (not stated).
 */
export function placeText(p) {
  if (!p) return t('positionUnstated');
  if (p.status === 'no-fix') return t('noFix', t(`noFix.${p.noFix}`));
  const acc = p.accuracy === null ? t('accuracyUnknown') : t('metres', p.accuracy);
  const at = `${p.lat}, ${p.lon}`;
  return p.fixMs === null ? t('placeUntimed', at, acc) : t('place', at, acc, fmtTime(p.fixMs * 1000));
}

/** The API's position of an entry (`EntryPosition`) as `placeText` takes it. */
function apiPlace(p) {
  if (!p || p.status === 'unstated') return null;
  if (p.status === 'no-fix') return { status: 'no-fix', noFix: p.no_fix };
  return { status: 'fix', lat: (p.lat_e7 / 1e7).toFixed(7), lon: (p.lon_e7 / 1e7).toFixed(7),
    accuracy: p.accuracy_m === 65535 ? null : p.accuracy_m, fixMs: p.fix_us === null ? null : p.fix_us / 1000 };
}

/** An element showing a place, its status and reason in data attributes for tests. */
function placeOut(p, attrs = {}) {
  return h('span', { ...attrs, class: 'place', 'data-status': p ? p.status : 'unstated', 'data-no-fix': p && p.noFix ? p.noFix : null }, placeText(p));
}

function entriesTable(list) {
  return h('table', { class: 'entries' }, h('thead', {}, h('tr', {}, h('th', {}, t('seq')), h('th', {}, t('kind')),
    h('th', {}, t('start')), h('th', {}, t('end')), h('th', {}, t('position')), h('th', {}, t('media')), h('th', {}, t('received')))),
  h('tbody', {}, list.entries.slice().reverse().map((e) => h('tr', { 'data-seq': e.seq },
    h('td', {}, e.seq), h('td', {}, e.kind), h('td', {}, fmtTime(e.start_wall_us)), h('td', {}, fmtTime(e.end_wall_us)),
    h('td', {}, placeOut(apiPlace(e.position))),
    h('td', {}, e.media ? (e.media.held ? t('held') : t('notHeld')) : '—'), h('td', {}, fmtTime(e.receipt_us))))));
}

function liveState(d) {
  if (d.connected) return h('p', { id: 'device-state', 'data-connected': 'true' }, `${t('connected')} · ${d.recording_now ? t('recordingNow') : t('notRecording')} · ${t('lastSent')}: ${fmtTime(d.last_receipt_us)} · ${t('entriesN')}: ${d.entries}`);
  const msg = d.last_receipt_us ? t('offlineSince', d.last_kind || '—', fmtTime(d.last_receipt_us)) : t('neverSent');
  return h('p', { id: 'device-state', 'data-connected': 'false', role: 'status', class: 'warn' }, msg);
}

export async function devicePage(id) {
  let d = await api(`/api/devices/${enc(id)}`);
  const state = h('div', {}, liveState(d));
  const liveBox = h('div', { id: 'live' });
  const entriesBox = h('div', {});
  let player = null;
  const showLive = () => {
    if (player) { player.stop(); player = null; }
    liveBox.replaceChildren();
    if (d.recording_now) {
      player = playerView(d.id, d.recording_now, { live: true });
      liveBox.append(h('h2', {}, t('live')), player.el);
    } else if (d.last_recording) {
      liveBox.append(h('p', {}, h('a', { class: 'button play', href: `#/play/${d.id}/${d.last_recording}` }, t('play'))));
    }
  };
  const loadEntries = async () => {
    try {
      const from = Math.max(0, d.entries - 50);
      entriesBox.replaceChildren(h('h2', {}, t('entries')), entriesTable(await api(`/api/devices/${d.id}/entries?from=${from}&limit=50`)));
    } catch (e) { entriesBox.replaceChildren(h('h2', {}, t('entries')), failure(e)); }
  };
  showLive();
  loadEntries();
  const timer = setInterval(async () => {
    try {
      const next = await api(`/api/devices/${enc(id)}`);
      const changed = next.recording_now !== d.recording_now;
      d = next;
      state.replaceChildren(liveState(d));
      if (changed) showLive();
    } catch { /* the next tick tries again */ }
  }, 2000);
  onLeave(() => { clearInterval(timer); if (player) player.stop(); });
  return h('article', {}, h('h1', {}, `${t('device')} ${d.name} `, h('code', {}, d.id)),
    state, liveBox, entriesBox);
}

/**
 * A player of recording `rec` of `device`: the video, where it is (seq and
 * device time), buttons to the previous and next segment, and a list of
 * the segments to jump to. `{el, stop}`.
 */
function playerView(device, rec, { live = false } = {}) {
  const url = `/api/devices/${device}/recordings/${rec}/playlist.m3u8`;
  const video = h('video', { id: 'video', controls: true, playsinline: true, muted: live ? true : null, preload: 'auto' });
  const seqOut = h('output', { id: 'pos-seq' }, '—');
  const wallOut = h('output', { id: 'pos-wall' }, '—');
  const lagOut = h('output', { id: 'live-lag' }, '');
  const whereOut = h('output', { id: 'pos-where' }, '—');
  const err = h('p', { role: 'alert', class: 'error', id: 'player-error' });
  const list = h('ol', { class: 'segments' });
  const summary = h('summary', {}, t('segmentsN', '…'));
  let segments = [], ended = false, engine = null, refresh = null;
  const seek = (s) => { if (s) { video.currentTime = s.start + 0.05; video.play().catch(() => {}); } };
  const step = (k) => {
    const cur = segmentAt(segments, video.currentTime);
    const i = cur ? segments.indexOf(cur) : -1;
    seek(segments[Math.min(segments.length - 1, Math.max(0, i + k))]);
  };
  const show = () => {
    const s = segmentAt(segments, video.currentTime);
    if (!s) return;
    const wall = s.wall ? new Date(s.wall.getTime() + (video.currentTime - s.start) * 1000) : null;
    seqOut.textContent = String(s.seq);
    seqOut.dataset.seq = String(s.seq);
    if (whereOut.dataset.seq !== String(s.seq)) {
      whereOut.replaceChildren(placeOut(s.place));
      whereOut.dataset.seq = String(s.seq);
    }
    wallOut.textContent = fmtPrecise(wall);
    if (wall) wallOut.dataset.ms = String(wall.getTime());
    if (live && wall) lagOut.textContent = t('liveBehind', ((Date.now() - wall.getTime()) / 1000).toFixed(1));
  };
  const loadList = async () => {
    const r = await fetch(url, { credentials: 'same-origin' });
    if (!r.ok) throw new ApiError(r.status, 'playlist');
    ({ segments, ended } = parsePlaylist(await r.text()));
    list.replaceChildren(...segments.map((s) => h('li', {}, h('button', { type: 'button', class: 'seg', 'data-seq': s.seq, onclick: () => seek(s) },
      `#${s.seq} · ${fmtPrecise(s.wall)} · ${placeText(s.place)}`))));
    summary.textContent = t('segmentsN', segments.length);
    if (!ended && !refresh) refresh = setInterval(() => loadList().catch(() => {}), 2000);
    if (ended && refresh) { clearInterval(refresh); refresh = null; }
  };
  video.addEventListener('timeupdate', show);
  // Time to first frame (ms since the page's navigation started), for tests.
  video.addEventListener('playing', () => { video.dataset.firstPlaying ??= performance.now().toFixed(0); });
  video.addEventListener('timeupdate', () => {
    if (video.currentTime > 0) video.dataset.firstTimeupdate ??= performance.now().toFixed(0);
  });
  video.addEventListener('error', () => { err.textContent = t('mediaError', video.error ? video.error.message || video.error.code : '?'); });
  loadList().then(() => attach(video, url, { live, onError: (m) => { err.textContent = t('mediaError', m); } }))
    .then((p) => { engine = p; video.dataset.engine = p.engine; video.play().catch(() => {}); })
    .catch((e) => { err.textContent = e.message; });
  const el = h('div', { class: 'player' }, video,
    h('p', { class: 'position' }, `${t('seq')}: `, seqOut, ` · ${t('wall')}: `, wallOut, live ? ' · ' : '', live ? lagOut : ''),
    h('p', { class: 'position' }, `${t('position')}: `, whereOut),
    h('p', {}, h('button', { type: 'button', id: 'prev-seg', onclick: () => step(-1) }, t('prevSeg')), ' ',
      h('button', { type: 'button', id: 'next-seg', onclick: () => step(1) }, t('nextSeg'))),
    err, h('details', {}, summary, list));
  return { el, stop: () => { if (refresh) clearInterval(refresh); if (engine) engine.stop(); } };
}

export async function playPage(device, rec) {
  const p = playerView(device, rec, { live: false });
  onLeave(p.stop);
  return h('article', {}, h('h1', {}, `${t('player')} — `, h('a', { href: `#/devices/${device}` }, device)),
    h('p', { class: 'muted' }, rec), p.el);
}

export async function audit() {
  if (!AUDITORS.includes(me.role)) throw new ApiError(403, 'forbidden');
  const body = h('tbody', {});
  const more = h('button', { type: 'button', id: 'audit-more' }, t('more'));
  let from = 0;
  const load = async () => {
    const r = await api(`/api/audit?from=${from}&limit=100`);
    body.append(...r.leaves.map((l) => h('tr', {}, h('td', {}, l.index), h('td', {}, fmtTime(l.time_us)), h('td', {}, l.action),
      h('td', {}, l.actor), h('td', {}, l.device ? `${l.device} #${l.first_seq}–${l.last_seq}` : ''), h('td', {}, l.case || ''), h('td', {}, l.detail))));
    if (r.next_from === null || r.next_from === undefined) more.hidden = true; else from = r.next_from;
  };
  more.addEventListener('click', () => load().catch((e) => more.replaceWith(failure(e))));
  await load();
  return h('section', {}, h('h1', {}, t('audit')), h('table', { class: 'audit' }, h('thead', {}, h('tr', {},
    h('th', {}, '#'), h('th', {}, t('time')), h('th', {}, t('action')), h('th', {}, t('actor')), h('th', {}, t('device')),
    h('th', {}, t('number')), h('th', {}, t('detail')))), body), more);
}


/** Officers (Art. 36): certificate, validity, auxiliary staff; staff only. */
export async function officers() {
  if (!AUDITORS.includes(me.role)) throw new ApiError(403, 'forbidden');
  const list = await api('/api/officers');
  const today = new Date().toISOString().slice(0, 10);
  const rows = list.map((o) => {
    const valid = o.valid_from <= today && today <= o.valid_until;
    return h('tr', { 'data-certificate': o.certificate, 'data-valid': String(valid) },
      h('td', {}, h('code', {}, o.certificate)), h('td', {}, o.name),
      h('td', {}, o.auxiliary ? t('auxiliary') : t('certified')),
      h('td', {}, `${o.valid_from} – ${o.valid_until}`),
      h('td', { class: valid ? 'ok' : 'bad' }, valid ? t('certValid') : t('certInvalid')));
  });
  return h('section', {}, h('h1', {}, t('officers')), h('table', { class: 'officers' }, h('thead', {}, h('tr', {},
    h('th', {}, t('certificate')), h('th', {}, t('name')), h('th', {}, t('staffKind')), h('th', {}, t('validity')),
    h('th', {}, t('today')))), h('tbody', {}, rows)));
}
