// The player: an HLS playlist of a recording's original MPEG-TS segments
// (/api/devices/D/recordings/R/playlist.m3u8) in a <video>. hls.js (from
// npm, embedded in the server) plays it through Media Source Extensions
// wherever they exist — the same player in Chromium and Firefox, which
// tells the page the fragment and the playlist's PROGRAM-DATE-TIME at the
// current position and keeps live playback near the live edge. A browser
// without MSE that plays HLS itself (Safari on iOS) gets the playlist
// directly (Chromium 141 and later do too, for MPEG-TS with H.264 and
// AAC). The page parses the playlist too, to map the position to the
// entry's seq and the device's wall clock.

import { t } from './i18n.js';

let Hls = null;
let tried = false;

async function loadHls() {
  if (!tried) {
    tried = true;
    try { Hls = (await import('/web/hls.mjs')).default; } catch { Hls = null; }
  }
  return Hls;
}

/**
 * Where a segment was recorded, from its title in the playlist (the server's
 * `position::title`): `44.0110183 87.3000250 ±18 m · fix 2026-07-01T08:00:02.000Z`
 * or `no fix (fix-lost)`. `{status, lat, lon, accuracy, fixMs}`, with lat
 * and lon as decimal text, accuracy null when unknown and fixMs null when
 * the entry has no fix time; null when the entry states nothing.
 */
export function parsePlace(title) {
  const no = title.match(/^no fix \(([a-z-]+)\)$/);
  if (no) return { status: 'no-fix', noFix: no[1] };
  const m = title.match(/^(-?\d+\.\d+) (-?\d+\.\d+) ±(\d+|\?) m(?: · fix (\S+))?$/);
  if (!m) return null;
  return { status: 'fix', lat: m[1], lon: m[2], accuracy: m[3] === '?' ? null : Number(m[3]), fixMs: m[4] ? Date.parse(m[4]) : null };
}

/** The segments of playlist text: [{seq, start (s in the playlist), dur, wall (Date), place}]. */
export function parsePlaylist(text) {
  const out = [];
  let at = 0, wall = null, dur = 0, place = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) wall = new Date(line.slice(25));
    else if (line.startsWith('#EXTINF:')) {
      dur = parseFloat(line.slice(8));
      const title = line.slice(line.indexOf(',') + 1);
      const i = title.indexOf(' · ');
      place = i < 0 ? null : parsePlace(title.slice(i + 3));
    } else if (line && !line.startsWith('#')) {
      const m = line.match(/entries\/(\d+)\/media$/);
      out.push({ seq: m ? Number(m[1]) : null, start: at, dur, wall, place });
      at += dur;
    }
  }
  return { segments: out, ended: text.includes('#EXT-X-ENDLIST') };
}

/** The segment at playlist time `pos`. */
export function segmentAt(segments, pos) {
  let found = segments[0] || null;
  for (const s of segments) if (s.start <= pos + 1e-3) found = s;
  return found;
}

/**
 * Attach `url` to `video`. `live`: start near the live edge and stay
 * within about one segment of it. Returns {stop(), engine} or throws
 * with a message for people.
 */
export async function attach(video, url, { live = false, onError } = {}) {
  // `localStorage['fieldseal.player'] = 'native'` asks for the browser's
  // own HLS where it has one (tests check both ways).
  const native = video.canPlayType('application/vnd.apple.mpegurl') !== '';
  const H = native && localStorage.getItem('fieldseal.player') === 'native' ? null : await loadHls();
  if (H && H.isSupported()) {
    const hls = new H({
      enableWorker: false, // the CSP allows no worker from a blob: URL
      lowLatencyMode: false,
      liveSyncDurationCount: 1,
      liveMaxLatencyDurationCount: 2,
      maxLiveSyncPlaybackRate: 1.5,
      xhrSetup: (xhr) => { xhr.withCredentials = true; },
    });
    hls.on(H.Events.ERROR, (_, d) => { if (d.fatal && onError) onError(`${d.type}: ${d.details}`); });
    hls.loadSource(url);
    hls.attachMedia(video);
    return { engine: 'hls.js', hls, stop: () => hls.destroy() };
  }
  if (native) {
    video.src = url;
    return { engine: 'native', stop: () => { video.removeAttribute('src'); video.load(); } };
  }
  throw new Error(t('noPlayer'));
}
