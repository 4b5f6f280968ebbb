// The console in a real browser: Debian's chromium, headless, driven by playwright-core.
// tests/console.rs starts the services, the job and the console, then runs this script and
// talks with it by lines: each step prints one JSON line of what the page showed, and a step
// that needs something done outside the browser (a new trading day published) waits for a
// line on stdin. Every wait is for something on the page (no sleeps); a failure prints
// {"step":"error"} and exits 1.
import { chromium } from 'playwright-core';
import readline from 'node:readline';
import path from 'node:path';

const base = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOTS;
const hold = { ticker: process.env.HOLD_TICKER, qty: process.env.HOLD_QTY, from: process.env.HOLD_FROM };
const lines = readline.createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
async function nextLine() {
  const { value, done } = await input.next();
  if (done) throw new Error('stdin closed');
  return value.trim();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(30_000);
  page.on('dialog', (d) => { problems.push('a dialog opened: ' + d.message()); d.dismiss(); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  let holdingsPosts = 0;
  page.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/api/holdings')) holdingsPosts += 1; });
  const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });
  const rows = () => page.$$eval('#portfolio-rows tr', (trs) => Object.fromEntries(trs.map((tr) =>
    [tr.dataset.portfolio, { day: tr.querySelector('.day').textContent, value: tr.querySelector('.value').textContent }])));

  // 1. Every portfolio with its latest value.
  await page.goto(base + '/');
  await page.waitForFunction(() => document.querySelectorAll('#portfolio-rows tr').length > 0 && document.body.dataset.ready === 'true');
  await page.waitForFunction(() => document.getElementById('live').classList.contains('on'));
  say({ step: 'list', rows: await rows(), sparklines: await page.$$eval('#portfolio-rows td.spark img', (i) => i.length) });
  await shot('portfolios.png');

  // 2. A new day, live: the same document (no reload) shows it.
  await page.evaluate(() => { window.__sameDocument = true; });
  say({ step: 'await-day' });
  const day = await nextLine();
  const t0 = Date.now();
  await page.waitForFunction((d) => {
    const cells = [...document.querySelectorAll('#portfolio-rows tr .day')];
    return cells.length > 0 && cells.every((c) => c.textContent === d);
  }, day);
  const elapsed = Date.now() - t0;
  const stream = await page.$$eval('#changes li', (li) => li.map((l) => l.textContent));
  say({ step: 'live', rows: await rows(), same_document: await page.evaluate(() => window.__sameDocument === true), elapsed_ms: elapsed, stream_has_day: stream.some((s) => s.includes(day)) });
  await shot('portfolios-live.png');

  // 3. One portfolio: chart, log scale, zoom, the statistics.
  await page.goto(base + '/portfolios/P11');
  await page.waitForFunction(() => document.getElementById('report').textContent.includes('P11'));
  await page.waitForFunction(() => (document.getElementById('chart-img').getAttribute('src') || '').startsWith('data:image/svg+xml'));
  await page.waitForFunction(() => document.getElementById('window').textContent.includes('days'));
  const whole = await page.textContent('#window');
  await page.check('#log');
  await page.waitForFunction(() => document.getElementById('window').textContent.includes('log scale'));
  // The window's text before the drag: read after it, it may already be the zoomed one (the
  // page updates it on mouseup), and the wait below would wait for a second change.
  const unzoomed = await page.textContent('#window');
  const box = await page.locator('#chart').boundingBox();
  await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.75, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction((w) => { const t = document.getElementById('window').textContent; return t !== w && !t.startsWith(w.split(' · ')[0]); }, unzoomed);
  const zoomed = await page.textContent('#window');
  say({ step: 'portfolio', report: await page.textContent('#report'), whole, zoomed, latest: await page.textContent('#latest-value') });
  await shot('portfolio.png');

  // 4. A holdings change through the form: the job restates the history shown.
  await page.selectOption('#h-ticker', hold.ticker);
  await page.fill('#h-qty', hold.qty);
  await page.fill('#h-from', hold.from);
  const before = await page.textContent('#latest-value');
  // A double click sends one change: the form waits for its answer before the next.
  await page.dblclick('#h-submit');
  await page.waitForSelector('#h-published');
  await page.waitForSelector('#restated-notice');
  await page.waitForFunction((b) => document.getElementById('latest-value').textContent !== b, before);
  say({
    step: 'holdings',
    published: await page.textContent('#h-published'),
    notice: await page.textContent('#restated-notice'),
    before,
    latest: await page.textContent('#latest-value'),
    restated_badges: await page.$$eval('#portfolio-changes .badge.restated', (b) => b.length),
    posts: holdingsPosts,
    submit_enabled_after: await page.isEnabled('#h-submit'),
  });
  await shot('portfolio-restated.png');

  // 5. The job page: hostile dead letters render as text; the graph has rates.
  await page.goto(base + '/job');
  await page.waitForSelector('tr.dead-letter');
  await page.waitForFunction(() => [...document.querySelectorAll('#graph-svg .node text')].some((t) => /^[\d,]+ \w+\/s$/.test(t.textContent)));
  say({
    step: 'job',
    payloads: await page.$$eval('tr.dead-letter code.payload', (c) => c.map((x) => x.textContent)),
    pwned: await page.evaluate(() => window.__pwned ?? null),
    injected_elements: await page.$$eval('#dead-letters img, #dead-letters script, [onerror]', (e) => e.length),
    nodes: await page.$$eval('#graph-svg .node', (n) => n.map((g) => g.textContent)),
    partitions: await page.$$eval('#partitions tbody tr', (r) => r.length),
    commits: await page.$$eval('#commits tbody tr', (r) => r.length),
    freshness_chart: await page.$$eval('#freshness img', (i) => i.length),
  });
  await shot('job.png');
  say({ step: 'done', problems });
} catch (e) {
  // What the page showed when it failed, for the log.
  const pages = browser.contexts().flatMap((c) => c.pages());
  for (const p of pages) {
    try {
      await p.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true });
      problems.push('page at failure: ' + p.url() + ' · ' + (await p.textContent('main')).slice(0, 2000));
    } catch (_) { /* the page is gone */ }
  }
  say({ step: 'error', error: String(e && e.stack || e), problems });
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.close();
}
