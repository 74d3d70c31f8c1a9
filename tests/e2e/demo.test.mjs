// End-to-end test of the demo page (www/) in Debian's Chromium, through playwright-core.
// The page runs the built package from pkg/ against a real IndexedDB, served on 127.0.0.1.
// Set DEMO_SCREENSHOT=/some/file.png to save a screenshot of the page after the cleanup run.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { withBrowser } from "../shared/chromium.mjs";

// What the sample batch holds (see sampleEntries in www/app.js): 160 records and
// 40 dependent attachments. 40 records have TTL 0, 8 of them pinned; an expired
// record's attachment is unreachable; 40 drafts in 3 namespaces (14/13/13) keep
// the newest 5 each.
const BATCH = { added: 200, expired: 32, unreachable: 32, retention: 25 };

const env = withBrowser();
let context;
let page;
const pageErrors = [];
const consoleErrors = [];
const foreignRequests = [];

before(async () => {
  await env.ready;
  context = await env.browser.newContext(); // fresh storage: IndexedDB starts empty
  context.setDefaultTimeout(15_000);
  page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("request", (req) => {
    if (!req.url().startsWith(env.server.url) && !req.url().startsWith("data:")) foreignRequests.push(req.url());
  });
}, { timeout: 60_000 });

const text = (sel) => page.locator(sel).innerText();
const attr = (sel, name) => page.locator(sel).getAttribute(name);
const num = async (sel, name) => Number(await attr(sel, name));

async function stats() {
  return {
    entries: await num("#stats", "data-entries"),
    live: await num("#stats", "data-live"),
    garbage: await num("#stats", "data-garbage"),
  };
}

/** Clicks a button and waits until the page has finished the action it started. */
async function act(selector) {
  const done = Number((await page.locator("body").getAttribute("data-actions")) ?? 0);
  await page.locator(selector).click();
  await page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, done);
}

async function addEntry({ key, value = "v", ttl = "", namespace = "", pinned = false }) {
  await page.fill("#add-key", key);
  await page.fill("#add-value", value);
  await page.fill("#add-ttl", ttl);
  await page.fill("#add-namespace", namespace);
  await page.setChecked("#add-pinned", pinned);
  await act("#add-submit");
}

async function reasonCounts(rowsSelector) {
  const reasons = await page.locator(`${rowsSelector} tr[data-reason]`).evaluateAll((rows) =>
    rows.map((r) => r.dataset.reason),
  );
  const counts = {};
  for (const r of reasons) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

test("demo page: add, plan, run, plan again, errors shown", { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  await page.goto(env.server.url);
  await page.waitForSelector('body[data-ready="true"]');
  assert.match(await text("#status"), /Ready/);
  assert.deepEqual(await stats(), { entries: 0, live: 0, garbage: 0 }, "a fresh context starts with an empty store");

  // Invalid input: the library's own Error message reaches the page, and nothing is stored.
  await addEntry({ key: "bad", ttl: "-5" });
  assert.equal(await page.locator("#error").isVisible(), true);
  assert.match(await text("#error-message"), /ttlMs must not be negative/);
  await addEntry({ key: "", value: "no key" });
  assert.match(await text("#error-message"), /key must be a non-empty string/);
  assert.equal((await stats()).entries, 0);
  await page.click("#error-dismiss");
  assert.equal(await page.locator("#error").isVisible(), false);

  // A few entries by hand, then the sample batch.
  await addEntry({ key: "note-expired", value: "gone soon", ttl: "0" });
  await addEntry({ key: "note-pinned", value: "stays", ttl: "0", pinned: true });
  await addEntry({ key: "note-kept", value: "an hour", ttl: "3600", namespace: "app" });
  assert.equal(await page.locator("#error").isVisible(), false, await text("#error-message"));
  await act("#add-batch");
  assert.equal(await page.locator("#error").isVisible(), false, await text("#error-message"));
  assert.equal(await num("#batch-result", "data-added"), BATCH.added);
  const total = BATCH.added + 3;
  const expired = BATCH.expired + 1; // note-expired; note-pinned is pinned
  const garbage = expired + BATCH.unreachable + BATCH.retention;
  assert.deepEqual(await stats(), { entries: total, live: total - garbage, garbage });

  // Plan: the expired entries (and what only they kept alive) are planned, nothing else.
  await act("#plan-button");
  assert.equal(await num("#plan-summary", "data-actions"), garbage);
  assert.match(await text("#plan-summary"), new RegExp(`expired ${expired}\\b`));
  assert.deepEqual(await reasonCounts("#plan-rows"), {
    expired,
    unreachable: BATCH.unreachable,
    retention: BATCH.retention,
  });
  const planned = await page.locator("#plan-rows tr td.key").allInnerTexts();
  assert.ok(planned.includes("note-expired"));
  assert.ok(planned.includes("sample-004/attachment"), "an expired record's attachment is unreachable");
  assert.ok(!planned.includes("note-pinned"), "pinned entries are never planned");
  assert.ok(!planned.includes("note-kept"));
  assert.ok(!planned.includes("sample-000"), "sample-000 is pinned");
  assert.ok(!planned.includes("sample-000/attachment"), "a pinned record keeps its attachment alive");

  // Run: the report deletes exactly what was planned, with progress along the way.
  await act("#run-button");
  assert.equal(await page.locator("#error").isVisible(), false, await text("#error-message"));
  assert.equal(await page.locator("#report").isVisible(), true);
  assert.equal(await num("#report", "data-deleted"), garbage);
  assert.equal(await attr("#report", "data-done"), "true");
  assert.equal(await num('#report-rows tr[data-reason="expired"]', "data-count"), expired);
  assert.equal(await num('#report-rows tr[data-reason="unreachable"]', "data-count"), BATCH.unreachable);
  assert.equal(await num('#report-rows tr[data-reason="retention"]', "data-count"), BATCH.retention);
  assert.match(await text("#report-summary"), new RegExp(`Deleted ${garbage}\\b`));
  assert.ok((await num("#run-progress", "data-updates")) >= 2, "batches of 20 report progress several times");
  const bar = await page.locator("#run-progress").evaluate((p) => ({ value: p.value, max: p.max }));
  assert.equal(bar.value, bar.max, "the progress bar ends full");
  assert.deepEqual(await stats(), { entries: total - garbage, live: total - garbage, garbage: 0 });
  assert.equal(await page.locator("#plan-stale").isVisible(), true, "the plan on screen is marked out of date");

  if (process.env.DEMO_SCREENSHOT) await page.screenshot({ path: process.env.DEMO_SCREENSHOT, fullPage: true });

  // Plan again: nothing left to delete.
  await act("#plan-button");
  assert.equal(await num("#plan-summary", "data-actions"), 0);
  assert.match(await text("#plan-summary"), /Nothing to delete/);
  assert.equal(await page.locator("#plan-table").isVisible(), false);
  assert.equal(await page.locator("#plan-stale").isVisible(), false);

  // Look-ups: a kept entry reads back; a deleted one is gone.
  await page.fill("#get-key", "note-kept");
  await page.fill("#get-namespace", "app");
  await act("#get-submit");
  assert.match(await text("#get-result"), /"an hour"/);
  await page.fill("#get-key", "note-expired");
  await page.fill("#get-namespace", "");
  await act("#get-submit");
  assert.match(await text("#get-result"), /missing or expired/);

  // The chart has a point per action: open, 3 adds, batch, plan, run, plan.
  assert.ok((await num("#chart", "data-points")) >= 8);
  assert.equal(await page.locator("#chart svg polyline").count(), 2);

  // Reset deletes the database and starts empty.
  page.once("dialog", (d) => d.accept());
  await act("#reset-button");
  assert.equal(await page.locator("#error").isVisible(), false, await text("#error-message"));
  assert.deepEqual(await stats(), { entries: 0, live: 0, garbage: 0 });

  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
  assert.deepEqual(consoleErrors, [], "no console errors");
  assert.deepEqual(foreignRequests, [], "no requests outside the demo server");
  console.log(`# demo flow took ${Date.now() - t0} ms`);
});
