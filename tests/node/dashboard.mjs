// Drives oa's dashboard in a real headless Chromium (playwright-core, the system's Chromium),
// the way a person uses it. Run by tests/tests/dashboard.rs, which owns the server.
//
// Talks to the Rust test over lines: this script prints `NEED <what> [args]` and waits for a
// line `GO [value]` on stdin before it goes on; `OK <step> [detail]` reports a passed step.
// Any failure exits non-zero with the reason (and a screenshot `failure.png`).
//
// Environment: OA_URL (the page, ending in /), OA_KEY (user A), OA_OTHER_KEY (user B),
// OA_CHROMIUM (browser binary), OA_SCREENSHOT_DIR.

import { createInterface } from 'node:readline';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.OA_URL;
const key = process.env.OA_KEY;
const screenshots = process.env.OA_SCREENSHOT_DIR;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust test to do something; returns what it answers after `GO`. */
async function need(what) {
  console.log(`NEED ${what}`);
  const { value, done } = await lines.next();
  if (done || !value.startsWith('GO')) throw new Error(`the test answered ${JSON.stringify(value)} to NEED ${what}`);
  return value.slice(2).trim();
}

function ok(step, detail = '') {
  console.log(`OK ${step}${detail ? ` ${detail}` : ''}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.OA_CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const pageOrigin = new URL(url).origin;
const foreignRequests = [];
page.on('request', (request) => {
  const target = new URL(request.url());
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(target.protocol)) return;
  if (target.hostname !== '127.0.0.1') foreignRequests.push(request.url());
});
const consoleErrors = [];
page.on('pageerror', (error) => consoleErrors.push(error.message));

async function text(selector) {
  return (await page.locator(selector).textContent()) ?? '';
}

async function eventRow(orderid, timeout = 10000) {
  await page.locator(`#event-rows tr[data-orderid="${orderid}"]`).first().waitFor({ timeout });
}

try {
  // ---- a wrong key is refused with the API's message ----------------------------------
  await page.goto(url);
  await page.fill('#apikey', 'not-a-valid-key');
  await page.press('#apikey', 'Enter');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('Invalid openalgo apikey'));
  check(await page.locator('#dashboard').isHidden(), 'the dashboard showed for a wrong key');
  check(!(await page.evaluate(() => sessionStorage.getItem('oa.apikey'))), 'a refused key was stored');
  ok('wrong-key-refused', JSON.stringify(await text('#signin-error')));

  // ---- sign in: key in sessionStorage only, both live connections up -------------------
  await page.fill('#apikey', key);
  await page.press('#apikey', 'Enter');
  await page.locator('#dashboard').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelector('#events-state').dataset.state === 'connected');
  await page.waitForFunction(() => document.querySelector('#market-state').dataset.state === 'connected');
  const cookies = await context.cookies();
  check(cookies.length === 0, `cookies were set: ${JSON.stringify(cookies)}`);
  check((await page.evaluate(() => sessionStorage.getItem('oa.apikey'))) === key, 'the key is not in sessionStorage');
  check(!page.url().includes(key), 'the key is in the URL');
  await page.evaluate(() => { window.__loadMarker = 'same page'; });
  ok('signed-in');

  // ---- a MARKET order from the ticket, by keyboard --------------------------------------
  const cashBefore = await text('#funds dd[data-field="availablecash"]');
  await page.focus('#ticket-symbol');
  await page.keyboard.type('SBIN');
  await page.keyboard.press('Tab'); // exchange (NSE is first)
  await page.keyboard.press('Tab'); // action (Buy checked)
  await page.keyboard.press('Tab'); // quantity
  await page.keyboard.press('Control+A');
  await page.keyboard.type('3');
  check(await page.evaluate(() => document.activeElement.id === 'ticket-quantity'), 'Tab order does not reach the quantity field');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /Placed \(order \d+\)/.test(document.querySelector('#ticket-result').textContent), null, { timeout: 10000 });
  const placed = (await text('#ticket-result')).match(/order (\d+)/)[1];
  await eventRow(placed);
  await page.locator('#position-rows tr[data-symbol="SBIN"][data-quantity="3"]').waitFor({ timeout: 10000 });
  await page.waitForFunction((before) => document.querySelector('#funds dd[data-field="availablecash"]').textContent !== before, cashBefore, { timeout: 10000 });
  await page.locator(`#order-rows tr[data-orderid="${placed}"][data-status="complete"]`).waitFor({ timeout: 10000 });
  check((await page.evaluate(() => window.__loadMarker)) === 'same page', 'the page reloaded');
  ok('market-order', `${placed} cash ${cashBefore} -> ${await text('#funds dd[data-field="availablecash"]')}`);

  // ---- modify and cancel a resting LIMIT order ------------------------------------------
  await page.selectOption('#ticket-pricetype', 'LIMIT');
  await page.fill('#ticket-quantity', '1');
  await page.fill('#ticket-price', '100');
  await page.click('#ticket-submit');
  await page.waitForFunction((previous) => {
    const match = document.querySelector('#ticket-result').textContent.match(/Placed \(order (\d+)\)/);
    return match && match[1] !== previous;
  }, placed, { timeout: 10000 });
  const resting = (await text('#ticket-result')).match(/order (\d+)/)[1];
  const restingRow = page.locator(`#order-rows tr[data-orderid="${resting}"][data-status="open"]`);
  await restingRow.waitFor({ timeout: 10000 });
  await restingRow.getByRole('button', { name: `Modify order ${resting}` }).click();
  check((await text('#ticket-submit')).includes(resting), 'the ticket did not switch to modify mode');
  await page.fill('#ticket-price', '101');
  await page.press('#ticket-price', 'Enter');
  await page.waitForFunction(() => document.querySelector('#ticket-result').textContent.startsWith('Modified'), null, { timeout: 10000 });
  await page.locator(`#event-rows tr[data-event="modify_order_event"][data-orderid="${resting}"]`).waitFor({ timeout: 10000 });
  await page.locator(`#order-rows tr[data-orderid="${resting}"]`).getByRole('button', { name: `Cancel order ${resting}` }).click();
  await page.locator(`#order-rows tr[data-orderid="${resting}"][data-status="cancelled"]`).waitFor({ timeout: 10000 });
  await page.locator(`#event-rows tr[data-event="cancel_order_event"][data-orderid="${resting}"]`).waitFor({ timeout: 10000 });
  ok('modify-and-cancel', resting);

  // ---- an API error is shown as the API returns it -------------------------------------
  await page.selectOption('#ticket-pricetype', 'MARKET');
  await page.fill('#ticket-symbol', 'NOSUCHSYMBOL');
  await page.click('#ticket-submit');
  await page.waitForFunction(() => document.querySelector('#ticket-result').classList.contains('error'), null, { timeout: 10000 });
  const apiError = await text('#ticket-result');
  check(/^HTTP 4\d\d: /.test(apiError) && apiError.includes('NOSUCHSYMBOL'), `unexpected error text ${apiError}`);
  ok('api-error-shown', JSON.stringify(apiError));

  // ---- market watch: search, subscribe, a bus tick reaches the price and the chart ----
  await page.fill('#search-query', 'infosys');
  await page.press('#search-query', 'Enter');
  await page.getByRole('button', { name: 'Watch INFY on NSE' }).click();
  await page.locator('#watch-rows tr[data-symbol="NSE:INFY"]').waitFor();
  await need('tick NSE INFY 4321.5 4300');
  const tickSent = Date.now();
  await page.waitForFunction(() => document.querySelector('#watch-rows tr[data-symbol="NSE:INFY"] td[data-field="ltp"]').textContent === '4321.5', null, { timeout: 5000 });
  const tickDelay = Date.now() - tickSent;
  check((await text('#watch-rows tr[data-symbol="NSE:INFY"]')).includes('21.50 (0.50%)'), 'the change column is wrong');
  const pointsBefore = Number(await page.locator('#chart').getAttribute('data-points'));
  await need('tick NSE INFY 4330.25 4300');
  await page.waitForFunction((before) => Number(document.querySelector('#chart').dataset.points) > before, pointsBefore, { timeout: 5000 });
  check(await page.locator('#chart canvas').count() > 0, 'the chart has no canvas');
  ok('tick-to-price', `shown ${tickDelay} ms after the publish was confirmed; chart points ${pointsBefore} -> ${await page.locator('#chart').getAttribute('data-points')}`);

  // ---- system panel from /health -------------------------------------------------------
  await page.waitForFunction(() => document.querySelector('#system dd[data-field="event_mode"]')?.textContent.length > 0);
  check(await page.locator('#sink-rows tr').count() > 0, 'no event sinks are listed');
  ok('system-panel', await text('#system dd[data-field="event_mode"]'));

  // ---- the server restarts: disconnection shown, reconnect, replay of what was missed -
  // Socket.IO reconnects over HTTP long-polling first: holding those requests keeps the page
  // away until the test has placed an order it can only get by replay.
  await page.route('**/socket.io/**', (route) => route.abort());
  const missed = await need('restart-and-order');
  await page.waitForFunction(() => document.querySelector('#events-state').dataset.state !== 'connected', null, { timeout: 10000 });
  const shownWhileDown = await text('#events-state');
  await page.unroute('**/socket.io/**');
  await page.waitForFunction(() => document.querySelector('#events-state').dataset.state === 'connected', null, { timeout: 20000 });
  await eventRow(missed, 15000);
  await page.waitForFunction(() => document.querySelector('#market-state').dataset.state === 'connected', null, { timeout: 20000 });
  ok('restart-replay', `${missed} (${shownWhileDown})`);

  // ---- another user's events never appear ---------------------------------------------
  const [otherOrder, marker] = (await need('other-user-order-then-marker')).split(' ');
  await eventRow(marker);
  const leaked = await page.locator(`#event-rows tr[data-orderid="${otherOrder}"]`).count();
  check(leaked === 0, `user B's order ${otherOrder} appeared on user A's page`);
  ok('isolation', `${otherOrder} absent, marker ${marker} present`);

  // ---- layout at desktop and phone widths, screenshots for a reviewer ----------------
  for (const [name, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
    await page.setViewportSize(viewport);
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the ${name} layout is ${overflow}px wider than the viewport`);
    await page.screenshot({ path: path.join(screenshots, `dashboard-${name}.png`), fullPage: true });
  }
  ok('layout', `screenshots in ${screenshots}`);

  check(foreignRequests.length === 0, `requests left 127.0.0.1: ${foreignRequests.join(', ')}`);
  check(consoleErrors.length === 0, `page errors: ${consoleErrors.join('; ')}`);
  ok('done');
  await browser.close();
  process.exit(0);
} catch (error) {
  console.log(`FAIL ${error.message}`);
  try { await page.screenshot({ path: path.join(screenshots, 'failure.png'), fullPage: true }); } catch { /* best effort */ }
  await browser.close();
  process.exit(1);
}
