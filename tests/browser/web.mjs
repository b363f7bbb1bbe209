// The web page as a supervisor uses it, in Debian's chromium driven by
// playwright-core (no browser download). Started by
// tests/tests/web_browser.rs, which runs a server with a real agent
// recording a synthetic camera and passes, in the environment:
//   FIELDSEAL_URL, FIELDSEAL_USER, FIELDSEAL_PASSWORD, FIELDSEAL_CASE,
//   FIELDSEAL_DEVICE, FIELDSEAL_ARTIFACTS (screenshots, the download),
//   FIELDSEAL_AGENT_STOPPED (a file that appears once the agent is stopped).
// Prints `ok - STEP` / `not ok - STEP: why`, measurements as `measure NAME=VALUE`,
// `export FILE` for a downloaded package, and ends with `N passed, N failed`.

import { chromium } from 'playwright-core';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = process.env;
const BASE = env.FIELDSEAL_URL;
const ART = env.FIELDSEAL_ARTIFACTS;
const DEVICE = env.FIELDSEAL_DEVICE;
const CASE = env.FIELDSEAL_CASE;
mkdirSync(ART, { recursive: true });

let passed = 0, failed = 0;
const external = [], pageErrors = [];

async function step(name, f) {
  try {
    await f();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}: ${String(e && e.stack || e).split('\n').slice(0, 3).join(' | ')}`);
    await page.screenshot({ path: join(ART, `failed-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
  }
}

function check(cond, what) { if (!cond) throw new Error(what); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
const context = await browser.newContext({ acceptDownloads: true, locale: 'en-GB', viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith(BASE) && !u.startsWith('blob:') && !u.startsWith('data:')) external.push(u);
});
page.on('pageerror', (e) => pageErrors.push(String(e)));

const shot = (name) => page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });
const video = () => page.evaluate(() => {
  const v = document.querySelector('video');
  return v && { t: v.currentTime, err: v.error && (v.error.message || v.error.code), engine: v.dataset.engine, paused: v.paused };
});
const position = () => page.evaluate(() => ({
  seq: Number(document.getElementById('pos-seq')?.dataset.seq ?? NaN),
  wallMs: Number(document.getElementById('pos-wall')?.dataset.ms ?? NaN),
  error: document.getElementById('player-error')?.textContent || '',
}));

/** Wait until the video has played past `t` seconds and shows where it is, without a media error. */
async function playsPast(t, ms = 20000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await video();
    const p = await position();
    check(!(v && v.err) && !p.error, `media error: ${v && v.err} ${p.error}`);
    if (v && v.t > t && Number.isFinite(p.seq)) return v;
    check(Date.now() < until, `currentTime stayed at ${v && v.t}`);
    await sleep(100);
  }
}

/** Time to first frame: ms from navigation start to the first `playing` and `timeupdate` past 0. */
async function firstFrame() {
  return page.evaluate(() => {
    const v = document.querySelector('video');
    return { playing: Number(v.dataset.firstPlaying), timeupdate: Number(v.dataset.firstTimeupdate) };
  });
}

await step('the page is served with a strict CSP', async () => {
  const r = await page.goto(`${BASE}/`);
  const csp = r.headers()['content-security-policy'] || '';
  check(csp.includes("default-src 'self'") && csp.includes("script-src 'self'") && !csp.includes('unsafe'), `CSP: ${csp}`);
});

await step('log in with the keyboard', async () => {
  await page.waitForSelector('#user');
  await shot('01-login');
  await page.keyboard.type(env.FIELDSEAL_USER);
  await page.keyboard.press('Tab');
  await page.keyboard.type(env.FIELDSEAL_PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('a.case-link', { timeout: 15000 });
  const cookie = (await context.cookies()).find((c) => c.name === 'fieldseal_session');
  check(cookie && cookie.httpOnly, 'an HttpOnly session cookie');
  console.log(`measure session_cookie_secure=${cookie.secure}`);
  await shot('02-cases');
});

await step('the cases list shows compliance badges', async () => {
  const b = await page.locator('[data-compliant]').first().getAttribute('data-compliant');
  check(b === 'false', `the seeded case has findings, badge says compliant=${b}`);
});

await step('open the case with the keyboard', async () => {
  let found = false;
  for (let i = 0; i < 20 && !found; i++) {
    await page.keyboard.press('Tab');
    found = await page.evaluate(() => document.activeElement?.classList.contains('case-link'));
  }
  check(found, 'Tab reaches the case link');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check(outline !== 'none', `focus is visible (outline ${outline})`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('svg.timeline');
});

await step('the timeline shows the gaps: unexplained in red, explained with its signed reason', async () => {
  const red = page.locator('[data-kind="gap-unexplained"]');
  check(await red.count() >= 1, 'an unexplained gap');
  const fill = await red.first().evaluate((e) => getComputedStyle(e).fill);
  check(fill === 'rgb(207, 34, 46)', `unexplained gap fill ${fill}`);
  const explained = page.locator('[data-kind="gap-explained"]');
  check(await explained.count() >= 1, 'an explained gap');
  const title = await explained.first().locator('title').textContent();
  check(title.includes('user-stop'), `the signed reason is named: ${title}`);
  check(await page.locator('[data-kind="covered"]').count() >= 2, 'two covered runs');
  check(await page.locator('.finding.unexplained').count() >= 1, 'the unexplained finding is listed');
  check(await page.locator('.stage').count() === 6, 'the six stages');
  await shot('03-case');
});

await step('the export download is the custodian\'s', async () => {
  check(await page.locator('#export').count() === 0, 'no download button for a supervisor');
  // The custodian, in a browser context of their own.
  const ctx = await browser.newContext({ acceptDownloads: true, locale: 'en-GB' });
  const p2 = await ctx.newPage();
  await p2.goto(`${BASE}/`);
  await p2.waitForSelector('#user');
  await p2.fill('#user', env.FIELDSEAL_CUSTODIAN);
  await p2.fill('#password', env.FIELDSEAL_CUSTODIAN_PASSWORD);
  await p2.keyboard.press('Enter');
  await p2.waitForSelector('a.case-link', { timeout: 15000 });
  await p2.goto(`${BASE}/#/cases/${encodeURIComponent(CASE)}`);
  await p2.waitForSelector('#export', { timeout: 15000 });
  await p2.screenshot({ path: join(ART, '03b-case-custodian.png'), fullPage: true });
  const [dl] = await Promise.all([p2.waitForEvent('download'), p2.locator('#export').click()]);
  const file = join(ART, dl.suggestedFilename() || `${CASE}.fieldseal`);
  await dl.saveAs(file);
  check(!(await dl.failure()), `the download failed: ${await dl.failure()}`);
  console.log(`export ${file}`);
  await ctx.close();
});

let recPath = null;
await step('play a recording: time advances, no media error', async () => {
  recPath = await page.locator('a.play').first().getAttribute('href');
  // A fresh load, so that navigation start is the start of the measurement.
  await page.goto(`${BASE}/${recPath}`);
  await page.reload();
  const v = await playsPast(1.0);
  const ff = await firstFrame();
  console.log(`measure recording_first_playing_ms=${ff.playing} recording_first_timeupdate_ms=${ff.timeupdate} engine=${v.engine}`);
  check(v.engine === 'hls.js', `the embedded player plays it (engine ${v.engine})`);
  const p = await position();
  check(Number.isFinite(p.seq) && Number.isFinite(p.wallMs), `seq ${p.seq} and device time ${p.wallMs} shown`);
  await shot('04-playback');
});

await step('the player shows where the segment was recorded', async () => {
  // The agent's receiver (a stand-in gpsd) has a steady fix at 44.011 N,
  // 87.3 E with an error of 4.2 m: each segment states it, with its fix time.
  const where = page.locator('#pos-where .place');
  await where.waitFor({ timeout: 10000 });
  check(await where.getAttribute('data-status') === 'fix', `status ${await where.getAttribute('data-status')}`);
  const text = await where.textContent();
  check(text.includes('44.0110000, 87.3000000') && text.includes('accuracy 5 m') && text.includes('fix time'), `position: ${text}`);
  const seg = await page.locator('button.seg').first().textContent();
  check(seg.includes('44.0110000, 87.3000000'), `the segment list names the place: ${seg}`);
});

await step('"no fix" is said in words, never as a place', async () => {
  const words = await page.evaluate(async () => {
    const { placeText } = await import('/web/pages.js');
    return ['no-receiver', 'receiver-unreachable', 'no-fix-yet', 'fix-lost'].map((noFix) => placeText({ status: 'no-fix', noFix }));
  });
  check(JSON.stringify(words) === JSON.stringify(['No fix: no receiver configured', 'No fix: gpsd unreachable', 'No fix: no fix yet', 'No fix: fix lost']), `words: ${words}`);
  check(words.every((w) => !/\d/.test(w)), `no number in ${words}`);
});

await step('seek into a later segment', async () => {
  const buttons = page.locator('button.seg');
  const n = await buttons.count();
  check(n >= 3, `${n} segments listed`);
  await page.locator('details summary').click();
  // The one before the last: the video does not end while we watch it.
  const last = buttons.nth(n - 2);
  const want = Number(await last.getAttribute('data-seq'));
  const before = await position();
  await last.click();
  const until = Date.now() + 15000;
  let p;
  for (;;) {
    p = await position();
    if (p.seq === want) break;
    check(Date.now() < until, `position stayed at seq ${p.seq}, wanted ${want}`);
    await sleep(100);
  }
  check(p.wallMs > before.wallMs, 'the device time moved on');
  const t0 = (await video()).t;
  await playsPast(t0 + 0.3);
  await page.locator('#prev-seg').click();
  await sleep(300);
  const back = await position();
  check(back.seq < want, `previous segment: ${back.seq} < ${want}`);
  await shot('05-seeked');
});

await step("the browser's own HLS plays it too, where it has one", async () => {
  const native = await page.evaluate(() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl'));
  if (!native) { console.log('measure native_hls=none'); return; }
  await page.evaluate(() => localStorage.setItem('fieldseal.player', 'native'));
  await page.reload();
  const v = await playsPast(1.0);
  check(v.engine === 'native', `engine ${v.engine}`);
  const ff = await firstFrame();
  console.log(`measure native_first_playing_ms=${ff.playing} native_first_timeupdate_ms=${ff.timeupdate}`);
  await page.evaluate(() => localStorage.removeItem('fieldseal.player'));
});

await step('the live view of a recording device stays near capture', async () => {
  await page.goto(`${BASE}/#/devices/${DEVICE}`);
  await page.reload();
  await page.waitForSelector('#device-state[data-connected="true"]');
  await page.waitForSelector('#live video');
  const v0 = await playsPast(0.5, 30000);
  const ff = await firstFrame();
  console.log(`measure live_first_playing_ms=${ff.playing} live_first_timeupdate_ms=${ff.timeupdate}`);
  const p0 = await position();
  await sleep(4000);
  const v1 = await video();
  const p1 = await position();
  check(v1.t > v0.t + 2, `live advanced ${v0.t} → ${v1.t}`);
  check(p1.seq > p0.seq, `seq advanced ${p0.seq} → ${p1.seq}`);
  // Behind capture: the device's time at the position against now (one
  // machine, one clock), and how many arrived segments are newer. Sampled
  // five times a second apart and judged by the best: a loaded machine
  // stalls the player now and then, and the promise is where it settles.
  const rec = await page.evaluate(() => document.querySelector('#live video') && location.hash);
  const samples = [];
  for (let i = 0; i < 5; i++) {
    const p = await position();
    const d = await (await page.request.get(`${BASE}/api/devices/${DEVICE}`)).json();
    const pl = await (await page.request.get(`${BASE}/api/devices/${DEVICE}/recordings/${d.recording_now}/playlist.m3u8`)).text();
    const seqs = [...pl.matchAll(/entries\/(\d+)\/media/g)].map((m) => Number(m[1]));
    samples.push({ lag: (Date.now() - p.wallMs) / 1000, behind: seqs.filter((s) => s > p.seq).length });
    await sleep(1000);
  }
  const lag = Math.min(...samples.map((x) => x.lag));
  const behind = Math.min(...samples.map((x) => x.behind));
  console.log(`measure live_lag_s=${lag.toFixed(2)} live_behind_segments=${behind} (${rec}; samples ${samples.map((x) => `${x.lag.toFixed(2)}s/${x.behind}`).join(' ')})`);
  check(behind <= 2, `${behind} segments behind the newest that arrived`);
  // 1 s segments: two whole segments behind, plus the one being captured.
  check(lag <= 3.0, `${lag} s behind capture`);
  await shot('06-live');
});

await step('an offline device says so and what it last sent', async () => {
  console.log('LIVE-CHECKED');
  const until = Date.now() + 60000;
  while (!existsSync(env.FIELDSEAL_AGENT_STOPPED)) {
    check(Date.now() < until, 'the agent was not stopped');
    await sleep(200);
  }
  await page.waitForSelector('#device-state[data-connected="false"]', { timeout: 20000 });
  const text = await page.locator('#device-state').textContent();
  check(/offline/i.test(text) && /recording-stopped|agent|segment/.test(text), `state: ${text}`);
  await shot('07-offline');
});

await step('switch the language, and it is remembered', async () => {
  await page.goto(`${BASE}/#/cases`);
  await page.waitForSelector('a.case-link');
  const before = await page.locator('#nav a').first().textContent();
  const was = await page.evaluate(() => document.documentElement.lang);
  await page.locator('#lang').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((w) => document.documentElement.lang !== w, was);
  const after = await page.locator('#nav a').first().textContent();
  check(before !== after, `nav label ${before} → ${after}`);
  await page.reload();
  await page.waitForSelector('a.case-link');
  check(await page.locator('#nav a').first().textContent() === after, 'kept after a reload');
  check(await page.evaluate(() => document.documentElement.lang) === 'zh-CN', 'Chinese');
  await shot('08-chinese');
});

await step('the entries list shows each entry\'s position, in Chinese too', async () => {
  await page.goto(`${BASE}/#/devices/${DEVICE}`);
  const fix = page.locator('table.entries td .place[data-status="fix"]');
  await fix.first().waitFor({ timeout: 15000 });
  const text = await fix.first().textContent();
  check(text.includes('44.0110000, 87.3000000') && text.includes('精度 5 米') && text.includes('定位时间'), `position: ${text}`);
  const header = await page.locator('table.entries thead').textContent();
  check(header.includes('位置'), `the column is labelled: ${header}`);
  const lost = await page.evaluate(async () => (await import('/web/pages.js')).placeText({ status: 'no-fix', noFix: 'fix-lost' }));
  check(lost === '无定位：定位丢失', `Chinese words: ${lost}`);
  await shot('08b-entries-positions');
});

await step('the access log lists the views', async () => {
  await page.goto(`${BASE}/#/audit`);
  await page.waitForSelector('table.audit tbody tr');
  const text = await page.locator('table.audit').textContent();
  check(text.includes('view') && text.includes('login'), 'view and login leaves');
  await shot('09-audit');
});

await step('the officers page shows each certificate and whether it is valid today', async () => {
  await page.goto(`${BASE}/#/officers`);
  const row = page.locator('tr[data-certificate]').first();
  await row.waitFor({ timeout: 10000 });
  check(await row.getAttribute('data-valid') === 'true', 'the seeded officer\'s certificate is valid today');
  await shot('10-officers');
});

await step('no request left this origin, no script error', async () => {
  check(external.length === 0, `external requests: ${external.join(', ')}`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
