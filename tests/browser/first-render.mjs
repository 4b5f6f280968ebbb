// The console's portfolio page in headless chromium: ms from navigation start to the first
// page of portfolio rows on screen, RUNS times (a fresh page each). Prints one JSON line.
// Used by scripts/bench-console.
import { chromium } from 'playwright-core';

const base = process.env.CONSOLE_URL;
const runs = Number(process.env.RUNS || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const ms = [];
let rows = 0;
let total = '';
try {
  for (let i = 0; i < runs; i++) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(base + '/', { waitUntil: 'commit' });
    await page.waitForFunction(() => document.querySelectorAll('#portfolio-rows tr td.spark img').length > 0, null, { timeout: 30_000 });
    ms.push(await page.evaluate(() => performance.now()));
    rows = await page.$$eval('#portfolio-rows tr', (r) => r.length);
    total = await page.textContent('#page-info');
    await page.close();
  }
} finally {
  await browser.close();
}
ms.sort((a, b) => a - b);
console.log(JSON.stringify({ runs, rows, total, median_ms: ms[Math.floor(ms.length / 2)], max_ms: ms[ms.length - 1], all_ms: ms }));
