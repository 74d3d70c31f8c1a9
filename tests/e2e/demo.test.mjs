// End-to-end test of the demo page (www/) in Debian's Chromium, through playwright-core.
// The page runs the built package from pkg/ against real IndexedDB and OPFS stores, served on 127.0.0.1.
// It saves a screenshot of the page after the cleanup runs to target/demo-screenshot.png, or to
// DEMO_SCREENSHOT when set.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { withBrowser } from "../shared/chromium.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCREENSHOT = process.env.DEMO_SCREENSHOT || join(ROOT, "target", "demo-screenshot.png");

/**
 * What "Generate" writes for n entries (see generate() in www/app.js), under the
 * page's default policy (drafts keep the newest 20, no age or quota rule):
 * ⌊n/2⌋ API responses, every other one past its TTL (expired); of the rest,
 * ⌊2/5⌋ drafts (all but the newest 20 of the namespace go as retention) and
 * notes, an image for each block of 30 notes.
 */
function generated(n, draftsBefore = 0) {
  const api = Math.floor(n / 2);
  const drafts = Math.floor(((n - api) * 2) / 5);
  const notes = n - api - drafts;
  const expired = Math.ceil(api / 2);
  const retention = Math.max(0, draftsBefore + drafts - 20);
  return { api, drafts, notes, images: Math.ceil(notes / 30), expired, retention, garbage: expired + retention };
}

const env = withBrowser();
let context;
let page;
const pageErrors = [];
const consoleErrors = [];
const foreignRequests = [];

/** A page in a fresh context (empty storage) that records errors and requests leaving the server. */
async function openPage() {
  const ctx = await env.browser.newContext({ viewport: { width: 1280, height: 900 } });
  ctx.setDefaultTimeout(15_000);
  const p = await ctx.newPage();
  p.on("pageerror", (err) => pageErrors.push(err.message));
  p.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  // blob: URLs of this origin are the attachments' thumbnails, made in the page.
  const own = [env.server.url, `blob:${env.server.url}`, "data:"];
  p.on("request", (req) => {
    if (!own.some((prefix) => req.url().startsWith(prefix))) foreignRequests.push(req.url());
  });
  return { ctx, p };
}

before(async () => {
  await env.ready;
  ({ ctx: context, p: page } = await openPage());
}, { timeout: 60_000 });

const text = (sel) => page.locator(sel).innerText();
const attr = (sel, name) => page.locator(sel).getAttribute(name);
const num = async (sel, name) => Number(await attr(sel, name));

async function stats() {
  return {
    entries: await num("#stats", "data-entries"),
    live: await num("#stats", "data-live"),
    blobs: await num("#stats", "data-blobs"),
    garbage: await num("#stats", "data-garbage"),
  };
}

/** Clicks (or selects) and waits until the page has finished the action it started. */
async function act(selector, { timeout = 30_000, select } = {}) {
  const done = Number((await page.locator("body").getAttribute("data-actions")) ?? 0);
  if (select !== undefined) await page.selectOption(selector, select);
  else await page.locator(selector).click();
  await page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, done, { timeout, polling: 50 });
}

async function noError() {
  assert.equal(await page.locator("#error").isVisible(), false, await text("#error-message"));
}

async function generate(n, timeout) {
  await page.fill("#gen-count", String(n));
  await act("#generate-button", { timeout });
  await noError();
  assert.equal(await num("#gen-result", "data-added"), n);
}

/** The plan's totals by reason, from the totals table (every action, not only the rows shown). */
async function planTotals() {
  const rows = await page.locator("#plan-totals-rows tr[data-reason]").evaluateAll((trs) =>
    trs.map((r) => [r.dataset.reason, Number(r.dataset.count), Number(r.dataset.bytes)]),
  );
  const counts = Object.fromEntries(rows.map(([reason, count]) => [reason, count]));
  const bytes = rows.reduce((sum, [, , b]) => sum + b, 0);
  return { counts, bytes, total: await num("#plan-totals", "data-count"), actions: await num("#plan-summary", "data-actions") };
}

async function report() {
  return {
    deleted: await num("#report", "data-deleted"),
    own: await num("#report", "data-own"),
    done: await attr("#report", "data-done"),
    stopped: await attr("#report", "data-stopped"),
    resumed: await attr("#report", "data-resumed"),
  };
}

test("demo page: generate, plan, run, cancel, background runs, policy, stores", { timeout: 150_000 }, async () => {
  const t0 = Date.now();
  await page.goto(env.server.url);
  await page.waitForSelector('body[data-ready="true"]');
  assert.match(await text("#status"), /Ready · indexeddb/);
  assert.deepEqual(await stats(), { entries: 0, live: 0, blobs: 0, garbage: 0 }, "a fresh context starts with an empty store");
  assert.equal(await attr("#health-status", "data-status"), "warning", "a store with no run logged yet");
  assert.match(await text("#health-reasons"), /no run/);

  // A policy the library refuses: its own message reaches the page, and the old policy stays.
  await page.fill("#pol-max-entries", "-1");
  await act("#policy-apply");
  assert.match(await text("#error-message"), /policy\.maxEntries must not be negative/);
  await page.click("#error-dismiss");
  // A fraction is the library's to refuse too, not the page's to round.
  await page.fill("#pol-max-entries", "1.5");
  await act("#policy-apply");
  assert.match(await text("#error-message"), /policy\.maxEntries must be a whole number/);
  await page.fill("#pol-max-entries", "");
  await page.click("#error-dismiss");
  assert.equal(await page.locator("#error").isVisible(), false);

  // Generate: notes with shared images, drafts and API responses.
  const g1 = generated(2000);
  await generate(2000);
  assert.equal(await num("#gen-result", "data-images"), g1.images);
  assert.deepEqual(await stats(), { entries: 2000, live: 2000 - g1.garbage, blobs: g1.images, garbage: g1.garbage });

  // Plan: the stale API responses expire, drafts beyond the newest 20 go; pinned notes and images stay.
  await act("#plan-button");
  let plan = await planTotals();
  assert.deepEqual(plan.counts, { expired: g1.expired, retention: g1.retention });
  assert.equal(plan.total, g1.garbage);
  assert.equal(plan.actions, g1.garbage);
  assert.ok(plan.bytes > 0);
  assert.match(await text("#plan-summary"), new RegExp(`expired ${g1.expired}\\b.*retention ${g1.retention}\\b`));
  const shown = await page.locator("#plan-rows tr[data-reason]").evaluateAll((trs) =>
    trs.map((r) => ({ reason: r.dataset.reason, key: r.cells[2].textContent, ns: r.cells[1].textContent, bytes: Number(r.cells[4].textContent.replace(/,/g, "")) })),
  );
  assert.equal(shown.length, 200, "the table shows the first 200 actions");
  assert.match(await text("#plan-rows tr.more"), /and 680 more/);
  for (const row of shown) {
    if (row.reason === "expired") assert.ok(row.ns === "api" && row.key.startsWith("GET /api/feed/"), row.key);
    else assert.ok(row.reason === "retention" && row.ns === "notes" && row.key.startsWith("draft/"), JSON.stringify(row));
    assert.ok(row.bytes > 0, `${row.key} has bytes`);
  }

  // Run: the report deletes exactly what was planned, with progress along the way.
  await act("#run-button");
  await noError();
  assert.deepEqual(await report(), { deleted: g1.garbage, own: g1.garbage, done: "true", stopped: "", resumed: "false" });
  assert.equal(await num('#report-rows tr[data-reason="expired"]', "data-count"), g1.expired);
  assert.equal(await num('#report-rows tr[data-reason="retention"]', "data-count"), g1.retention);
  assert.ok((await num("#run-progress", "data-updates")) >= 2, "batches of 250 report progress several times");
  const bar = await page.locator("#run-progress").evaluate((p) => ({ value: p.value, max: p.max }));
  assert.equal(bar.value, bar.max, "the progress bar ends full");
  let live = 2000 - g1.garbage;
  assert.deepEqual(await stats(), { entries: live, live, blobs: g1.images, garbage: 0 });
  assert.equal(await num("#stats", "data-freed"), plan.bytes, "freed bytes are the planned bytes");
  assert.equal(await attr("#health-status", "data-status"), "healthy");
  assert.equal(await num("#history-table", "data-runs"), 1);

  // The chart is uPlot's: a canvas, four series, a point per refresh (open, generate, plan, run).
  assert.equal(await page.locator("#chart .uplot canvas").count(), 1);
  assert.ok((await page.locator("#chart .uplot canvas").evaluate((c) => c.width * c.height)) > 0);
  assert.equal(await num("#chart", "data-series"), 4);
  assert.deepEqual(await page.locator("#chart .u-legend .u-series .u-label").allTextContents(), ["Entries", "Live", "Reclaimable", "Freed"]);
  assert.ok((await num("#chart", "data-points")) >= 4);
  assert.equal(await page.locator("#chart svg").count(), 0, "no hand-drawn SVG chart");

  // Delete notes: the 100 oldest use images 0–3; images 0–2 lose every note, and the
  // scheduler's light run after the deletes removes them in the background.
  await act("#delete-notes");
  await noError();
  assert.equal(await num("#delete-result", "data-deleted"), 100);
  await page.waitForSelector('#bg-events li[data-type="end"][data-mode="light"]', { timeout: 10_000 });
  assert.equal(await num('#bg-events li[data-type="end"][data-mode="light"]', "data-deleted"), 3);
  assert.match(await text("#bg-events"), /orphanBlob 3/);
  await act("#plan-button");
  live -= 100;
  assert.deepEqual(await stats(), { entries: live, live, blobs: g1.images - 3, garbage: 0 });
  assert.ok((await num("#sched-stats", "data-runs")) >= 1);
  assert.equal(await num("#history-table", "data-runs"), 2, "the background run is in the run log");

  // Pin a note from the list, then unpin it: a rewrite that keeps everything else.
  const first = page.locator("#notes-list li[data-key]").first();
  const key = await first.getAttribute("data-key");
  const pinned = await first.getAttribute("data-pinned");
  await act(`#notes-list li[data-key="${key}"] button:text-is("${pinned === "true" ? "Unpin" : "Pin"}")`);
  assert.equal(await attr(`#notes-list li[data-key="${key}"]`, "data-pinned"), pinned === "true" ? "false" : "true");
  await act(`#notes-list li[data-key="${key}"] button:text-is("${pinned === "true" ? "Pin" : "Unpin"}")`);
  assert.equal(await attr(`#notes-list li[data-key="${key}"]`, "data-pinned"), pinned);
  assert.equal((await stats()).entries, live);

  // Cancel: a larger batch, a run cancelled after its first batches.
  const g2 = generated(20_000, 20);
  await generate(20_000, 60_000);
  const before = await stats();
  assert.deepEqual(before, { entries: live + 20_000, live: live + 20_000 - g2.garbage, blobs: g1.images - 3 + g2.images, garbage: g2.garbage });
  const planned = await planTotals();
  assert.deepEqual(planned.counts, { expired: g2.expired, retention: g2.retention });
  const freedBefore = await num("#stats", "data-freed");
  const done = Number(await attr("body", "data-actions"));
  await page.click("#run-button");
  await page.waitForFunction(() => Number(document.getElementById("run-progress").dataset.deleted ?? 0) >= 250, null, { timeout: 30_000, polling: 10 });
  await page.click("#cancel-button");
  await page.waitForFunction((n) => Number(document.body.dataset.actions) > n, done, { timeout: 30_000 });
  await noError();
  const cancelled = await report();
  assert.equal(cancelled.done, "false");
  assert.equal(cancelled.stopped, "aborted");
  assert.ok(cancelled.deleted >= 250 && cancelled.deleted < g2.garbage, `cancelled after ${cancelled.deleted} of ${g2.garbage}`);
  assert.match(await text("#run-progress-text"), /Cancelled after/);
  // What was left: the plan and the stats say the rest is still there.
  assert.deepEqual(await stats(), {
    entries: before.entries - cancelled.deleted,
    live: before.live,
    blobs: before.blobs,
    garbage: g2.garbage - cancelled.deleted,
  });
  plan = await planTotals();
  assert.equal(plan.total, g2.garbage - cancelled.deleted);
  assert.equal(plan.actions, g2.garbage - cancelled.deleted);
  assert.equal(await num("#history-table", "data-runs"), 3);
  assert.equal(await page.locator('#history-rows tr[data-done="false"]').count(), 1, "the run log shows the stopped run");
  // The artifact: the page after the cancelled run, its plan table showing what is left.
  await mkdir(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // The next run goes on where the cancelled one stopped; its report counts both.
  await act("#run-button");
  await noError();
  assert.deepEqual(await report(), { deleted: g2.garbage, own: g2.garbage - cancelled.deleted, done: "true", stopped: "", resumed: "true" });
  assert.deepEqual(await stats(), { entries: before.live, live: before.live, blobs: before.blobs, garbage: 0 });
  live = before.live;
  assert.equal(await num("#stats", "data-freed"), freedBefore + planned.bytes, "the two runs freed what was planned, counted once");
  assert.equal(await num("#history-table", "data-runs"), 3, "the run that went on from the cancelled one is on its line");
  assert.equal(await attr("#health-status", "data-status"), "healthy");


  // Another store: memory, empty; a max-entries policy evicts the least recently used notes.
  await act("#store-select", { select: "memory" });
  await noError();
  assert.match(await text("#store-name"), /memory/);
  assert.deepEqual(await stats(), { entries: 0, live: 0, blobs: 0, garbage: 0 });
  await generate(2000);
  assert.deepEqual((await planTotals()).counts, { expired: g1.expired, retention: g1.retention });
  await page.fill("#pol-max-entries", "500");
  await act("#policy-apply");
  await noError();
  plan = await planTotals();
  // notes: 600 notes and the 20 drafts kept by retention are 620, 120 above 500 (pinned ones count, stay);
  // api: 500 fresh responses, at the limit.
  assert.equal(plan.counts.maxEntries, 120);
  assert.equal(plan.counts.expired, g1.expired);
  assert.equal(plan.counts.retention, g1.retention);
  await act("#run-button");
  await noError();
  assert.equal((await report()).done, "true");
  assert.equal((await stats()).entries, 2000 - g1.garbage - 120);
  assert.equal((await stats()).garbage, 0);
  await page.fill("#pol-max-entries", "");
  await act("#policy-apply");
  assert.match(await text("#policy-result"), /^Applied at/);

  // Fields edited without Apply wait for it: not used by a store switch or Generate.
  await page.fill("#pol-max-entries", "1");
  await page.fill("#pol-ttl", "0.001");
  assert.match(await text("#policy-result"), /^Edited: press Apply/);

  // OPFS: blobs as files; the same data, the same plan.
  await act("#store-select", { select: "opfs" });
  await noError();
  assert.match(await text("#store-name"), /opfs/);
  assert.deepEqual(await stats(), { entries: 0, live: 0, blobs: 0, garbage: 0 });
  await generate(2000);
  assert.deepEqual(await stats(), { entries: 2000, live: 2000 - g1.garbage, blobs: g1.images, garbage: g1.garbage });
  assert.deepEqual((await planTotals()).counts, { expired: g1.expired, retention: g1.retention });
  await page.fill("#pol-max-entries", "");
  await page.fill("#pol-ttl", "3600");
  await act("#run-button");
  await noError();
  assert.deepEqual(await report(), { deleted: g1.garbage, own: g1.garbage, done: "true", stopped: "", resumed: "false" });
  assert.deepEqual(await stats(), { entries: 2000 - g1.garbage, live: 2000 - g1.garbage, blobs: g1.images, garbage: 0 });
  assert.equal(await page.locator("#notes-list img.thumb").count() > 0, true, "attachments read back from OPFS");

  // Back to IndexedDB: the data is still there.
  await act("#store-select", { select: "indexeddb" });
  await noError();
  assert.deepEqual(await stats(), { entries: live, live, blobs: before.blobs, garbage: 0 });
  assert.equal(await num("#history-table", "data-runs"), 3, "the run log is the store's");

  // Another tab deletes the database: the next action finds the store closed,
  // the page opens it again (empty), and what it freed starts again from 0
  // (the old store's Freed total stayed beside an empty store).
  assert.ok((await num("#stats", "data-freed")) > 0);
  const other = await context.newPage();
  await other.goto(`${env.server.url}/pkg/index.js`);
  await other.evaluate((name) => new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = resolve;
    req.onerror = () => reject(req.error);
  }), "kvsweep-demo");
  await other.close();
  await act("#plan-button");
  assert.match(await text("#error-message"), /another tab or worker deleted the database.*\(the page has opened the store again\)/);
  await page.click("#error-dismiss");
  assert.deepEqual(await stats(), { entries: 0, live: 0, blobs: 0, garbage: 0 });
  assert.equal(await num("#stats", "data-freed"), 0);

  // Delete the store's data: empty again.
  page.once("dialog", (d) => d.accept());
  await act("#reset-button");
  await noError();
  assert.deepEqual(await stats(), { entries: 0, live: 0, blobs: 0, garbage: 0 });

  // The browser's ResizeObserver notice is no error banner (resizing the window showed one).
  await page.evaluate(() => window.dispatchEvent(new ErrorEvent("error", { message: "ResizeObserver loop completed with undelivered notifications." })));
  await noError();
  // Background cleanup off: a request would clean unseen by the page, so it is refused, saying why.
  await page.locator("#sched-on").uncheck();
  await act("#policy-apply");
  await page.locator("#request-run").click();
  assert.match(await text("#error-message"), /Background cleanup is off/);
  assert.equal(await page.evaluate(() => document.querySelector("#sched-stats").dataset.runs ?? "0"), "0");
  await page.locator("#sched-on").check();
  await act("#policy-apply");
  await noError();

  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
  assert.deepEqual(consoleErrors, [], "no console errors");
  assert.deepEqual(foreignRequests, [], "no requests outside the demo server");
  console.log(`# demo flow took ${Date.now() - t0} ms; screenshot: ${SCREENSHOT}`);
});

test("demo page stays responsive while a run cleans 100,000 entries in IndexedDB", { timeout: 120_000 }, async () => {
  const t0 = Date.now();
  const { ctx, p } = await openPage();
  page = p;
  try {
    await page.goto(`${env.server.url}?store=indexeddb`);
    await page.waitForSelector('body[data-ready="true"]');
    // A heartbeat on timers and on animation frames: the longest time the page went without either.
    const beat = () =>
      page.evaluate(() => {
        const hb = (window.heartbeat = { timer: 0, frame: 0, stop: false });
        let lastTimer = performance.now();
        let lastFrame = lastTimer;
        const onTimer = () => {
          const now = performance.now();
          hb.timer = Math.max(hb.timer, now - lastTimer);
          lastTimer = now;
          if (!hb.stop) setTimeout(onTimer, 0);
        };
        const onFrame = () => {
          const now = performance.now();
          hb.frame = Math.max(hb.frame, now - lastFrame);
          lastFrame = now;
          if (!hb.stop) requestAnimationFrame(onFrame);
        };
        setTimeout(onTimer, 0);
        requestAnimationFrame(onFrame);
      });
    const stop = () => page.evaluate(() => ((window.heartbeat.stop = true), window.heartbeat));

    const g = generated(100_000);
    const tg = Date.now();
    await beat();
    await generate(100_000, 90_000);
    const genGap = await stop();
    const genMs = Date.now() - tg;
    assert.deepEqual(await stats(), { entries: 100_000, live: 100_000 - g.garbage, blobs: g.images, garbage: g.garbage });

    const tr = Date.now();
    await beat();
    const before = Number(await attr("body", "data-actions"));
    await page.locator("#run-button").click();
    // Once the run has reported, the buttons are free while the page plans
    // again (seconds at this size; they were held until it had).
    await page.waitForFunction(() => /^Finished/.test(document.querySelector("#run-progress-text").textContent), null, { timeout: 90_000, polling: 20 });
    const whileReplanning = await page.evaluate(() => ({ busy: document.body.dataset.busy, replanned: document.body.dataset.lastRefresh === "run", plan: document.querySelector("#plan-button").disabled }));
    assert.deepEqual(whileReplanning, { busy: "false", replanned: false, plan: false });
    await page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, before, { timeout: 90_000, polling: 50 });
    const runGap = await stop();
    const runMs = Date.now() - tr;
    await noError();
    assert.deepEqual(await report(), { deleted: g.garbage, own: g.garbage, done: "true", stopped: "", resumed: "false" });
    assert.deepEqual(await stats(), { entries: 100_000 - g.garbage, live: 100_000 - g.garbage, blobs: g.images, garbage: 0 });
    const line =
      `# 100,000 entries: generate ${genMs} ms (longest gap ${Math.round(genGap.timer)} ms timers, ${Math.round(genGap.frame)} ms frames); ` +
      `run + refresh ${runMs} ms deleting ${g.garbage} (longest gap ${Math.round(runGap.timer)} ms timers, ${Math.round(runGap.frame)} ms frames); ` +
      `test ${Date.now() - t0} ms`;
    console.log(line);
    // Measured 102–160 ms on 2 busy cores (the line above prints it); the
    // bound leaves room for a loaded CI machine, and the library's own gaps
    // are held to 50 ms by npm run bench, not here.
    assert.ok(runGap.timer < 250 && runGap.frame < 250, `the page went ${Math.round(Math.max(runGap.timer, runGap.frame))} ms without a timer or a frame during the cleanup`);

    // A policy applied while a background run goes closes the Sweeper that
    // runs it: the run's "started…" line ends, saying why (its own end event
    // is not shown: the page drops a replaced Sweeper's events).
    await page.locator("#request-run").click();
    await page.waitForSelector('#bg-events li[data-type="start"]', { timeout: 10_000 });
    const done = Number(await page.locator("body").getAttribute("data-actions"));
    const going = await page.evaluate(() => {
      const going = document.querySelector('#bg-events li[data-type="start"]') !== null;
      document.querySelector("#policy-apply").click();
      return going;
    });
    assert.ok(going, "the background run over 50,000 entries was still going when the policy was applied");
    await page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, done, { polling: 50 });
    await noError();
    assert.equal(await page.locator('#bg-events li[data-type="start"]').count(), 0, "no run is shown as started after its Sweeper closed");
    assert.match(await text("#bg-events"), /full run stopped: the policy changed/);
    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
    assert.deepEqual(foreignRequests, [], "no requests outside the demo server");
  } finally {
    await ctx.close();
  }
});
