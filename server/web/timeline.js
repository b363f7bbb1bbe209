// One activity's timeline as SVG: the activity's window, the media that
// covers it (one lane per device, verified or not), and the stretches
// without media — red when no signed reason explains them, grey when one
// does. Every shape has a <title>; the same facts are listed as text under
// the picture, so nothing is known only from colour.

import { t, fmtTime } from './i18n.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 800, LANE = 22, TOP = 8, AXIS = 26;

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function titled(shape, text) {
  shape.append(s('title', {}, text));
  return shape;
}

/** The SVG of activity verdict `a` (from /api/cases/N/compliance). */
export function timeline(a) {
  const devices = [...new Set(a.covered.map((r) => r.device))];
  const span = Math.max(1, a.end_us - a.start_us);
  const pad = span * 0.05;
  const x0 = a.start_us - pad, x1 = a.end_us + pad;
  const x = (us) => ((Math.min(Math.max(us, x0), x1) - x0) / (x1 - x0)) * W;
  const lanes = devices.length + 1;
  const height = TOP + lanes * LANE + AXIS;
  const gaps = a.verdict.findings.filter((f) => f.kind === 'uncovered');
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${height}`, class: 'timeline', role: 'img',
    'aria-label': `${t('timeline')}: ${a.covered.length} / ${gaps.length}`,
  });
  svg.append(titled(s('rect', { x: x(a.start_us), y: TOP - 4, width: x(a.end_us) - x(a.start_us),
    height: lanes * LANE + 4, class: 'tl-window' }), `${fmtTime(a.start_us)} – ${fmtTime(a.end_us)}`));
  devices.forEach((d, i) => {
    const y = TOP + i * LANE;
    svg.append(s('text', { x: 4, y: y + 15, class: 'tl-label' }, d.slice(0, 8)));
    for (const r of a.covered.filter((c) => c.device === d)) {
      svg.append(titled(s('rect', {
        x: x(r.start_us), y, width: Math.max(1, x(r.end_us) - x(r.start_us)), height: LANE - 6,
        class: r.verified ? 'tl-covered' : 'tl-unverified', 'data-kind': r.verified ? 'covered' : 'unverified',
      }), `${r.verified ? t('legendCovered') : t('legendUnverified')}: ${d} #${r.first_seq}–${r.last_seq}, ${fmtTime(r.start_us)} – ${fmtTime(r.end_us)}`));
    }
  });
  const gy = TOP + devices.length * LANE;
  svg.append(s('text', { x: 4, y: gy + 15, class: 'tl-label' }, t('gap')));
  for (const g of gaps) {
    const why = g.explained_by ? t('explainedBy', g.explained_by.reason, g.explained_by.device, g.explained_by.seq) : t('unexplained');
    svg.append(titled(s('rect', {
      x: x(g.from_us), y: gy, width: Math.max(2, x(g.to_us) - x(g.from_us)), height: LANE - 6,
      class: g.explained_by ? 'tl-explained' : 'tl-unexplained',
      'data-kind': g.explained_by ? 'gap-explained' : 'gap-unexplained',
    }), `${t('gap')} ${fmtTime(g.from_us)} – ${fmtTime(g.to_us)}: ${why}`));
  }
  const ay = TOP + lanes * LANE + 16;
  svg.append(s('line', { x1: x(a.start_us), x2: x(a.end_us), y1: ay - 12, y2: ay - 12, class: 'tl-axis' }));
  svg.append(s('text', { x: x(a.start_us), y: ay, class: 'tl-tick' }, fmtTime(a.start_us)));
  svg.append(s('text', { x: x(a.end_us), y: ay, class: 'tl-tick', 'text-anchor': 'end' }, fmtTime(a.end_us)));
  return svg;
}

/** The legend, as text with swatches. */
export function legend() {
  const item = (cls, key) => {
    const li = document.createElement('li');
    const sw = s('svg', { width: 14, height: 14, 'aria-hidden': 'true' }, s('rect', { width: 14, height: 14, class: cls }));
    li.append(sw, ' ', t(key));
    return li;
  };
  const ul = document.createElement('ul');
  ul.className = 'legend';
  ul.append(item('tl-covered', 'legendCovered'), item('tl-unverified', 'legendUnverified'),
    item('tl-explained', 'legendExplained'), item('tl-unexplained', 'legendUnexplained'));
  return ul;
}
