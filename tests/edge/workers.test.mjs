// Real workerd (miniflare 4): a Worker keeps a Workers KV namespace clean in
// slices over repeated requests, each under the 1,000-call limit, and a
// Durable Object cleans its own storage from its alarm. The test reads KV and
// the object's storage directly afterwards.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { recordsOf, checkScenario, kvNamesOf } from "../shared/kv-scenario.mjs";
import { WORKER_OPTIONS } from "./worker-options.mjs";

const NOW = 1_800_000_000_000;
const HOUR = 3_600_000;
let mf;

before(async () => {
  mf = new Miniflare(WORKER_OPTIONS);
  await mf.ready;
});

after(() => mf?.dispose());

async function call(path) {
  const res = await mf.dispatchFetch(`http://worker${path}`);
  const body = await res.json();
  assert.equal(res.status, 200, body.error);
  return body;
}

const key = (i) => `note-${String(i).padStart(5, "0")}`;

const expires = (i) => [0, 5, 6].includes(i % 10);

/** Keys that must survive: all but the deleted and the expired. */
function expectedSurvivors(n, deleted) {
  const out = [];
  for (let i = 0; i < n; i++) if (!expires(i) && !deleted.includes(i)) out.push(key(i));
  return out;
}

async function kvNames(binding = "KV") {
  return kvNamesOf(await mf.getKVNamespace(binding));
}

test("a Worker cleans Workers KV in slices: every request under its call limit, survivors exact", async () => {
  const N = 120;
  for (let from = 0; from < N; from += 40) {
    const seeded = await call(`/seed?now=${NOW}&from=${from}&to=${from + 40}`);
    assert.ok(seeded.calls <= seeded.limit, `seeding made ${seeded.calls} calls`);
  }
  const deleted = [1, 2];
  const del = await call(`/delete?now=${NOW}&key=${key(1)}&key=${key(2)}`);
  assert.equal(del[key(1)], true);
  // Expired entries read as gone before any run (lazy expiry).
  assert.equal((await call(`/get?now=${NOW + HOUR}&key=${key(10)}`)).value, null);

  const slices = [];
  for (let i = 0; i < 100; i++) {
    const { report, calls, limit } = await call(`/run?now=${NOW + HOUR}&maxOps=150`);
    assert.ok(calls <= 150 && calls <= limit, `slice ${i + 1} made ${calls} calls`);
    assert.equal(report.ops, calls, "the report counts the calls KV saw");
    slices.push(report);
    if (report.done) break;
  }
  const last = slices.at(-1);
  assert.equal(last.done, true);
  assert.ok(slices.length > 1, "the cleanup took more than one request");
  assert.equal(last.deleted.expired.count, (N * 3) / 10);

  const records = recordsOf(await kvNames());
  assert.deepEqual(records.m, expectedSurvivors(N, deleted));
  assert.deepEqual(records.t, [], "no temp left");
  assert.equal(records.c.length, 1, "the shared blob is still referenced");
  // Values as written, read back through the Worker.
  assert.deepEqual((await call(`/get?now=${NOW + HOUR}&key=${key(7)}`)).value, { i: 7, text: "note 7" });
  console.log(`# Workers KV: ${N} entries, ${slices.length} requests, calls per request (limit 150): ${slices.map((r) => r.ops).join(", ")}`);
});

test("a Worker's read through a Sweeper made per request and closed in waitUntil moves accessedAt, so maxEntries evicts another entry", async () => {
  await call(`/lru/put?now=${NOW}`);
  assert.equal((await call(`/lru/get?now=${NOW + 5_000}`)).value, "a");
  // Later requests (the refresh is written once close() ends, after the response).
  let evicts;
  for (let i = 0; i < 50 && evicts?.[0] !== "b:maxEntries"; i++) {
    if (i) await new Promise((r) => setTimeout(r, 100));
    ({ evicts } = await call(`/lru/plan?now=${NOW + 20_000}&close=no`));
  }
  assert.deepEqual(evicts, ["b:maxEntries"], "a was read last: b is the least recently used");
});

test("getBlob refuses blob bytes in R2 that other code overwrote", async () => {
  const out = await call("/r2-tampered");
  assert.equal(out.before, "the right bytes");
  assert.equal(out.objects, 1);
  assert.match(out.after, new RegExp(`^kvsweep: getBlob: the 11 bytes read for blob ${out.id} are not the ones its id names`));
});

test("a Worker cleans from its Cron Trigger, one slice per trigger, until done", async () => {
  const N = 80;
  for (let from = 0; from < N; from += 40) await call(`/seed?ns=cron&now=${NOW}&from=${from}&to=${from + 40}`);
  const worker = await mf.getWorker();
  const cron = await mf.getKVNamespace("CRON_KV");
  const reports = [];
  for (let i = 0; i < 50; i++) {
    const result = await worker.scheduled({ scheduledTime: new Date(NOW + HOUR), cron: "*/5 * * * *" });
    assert.equal(result.outcome, "ok");
    const report = JSON.parse(await cron.get("test:last-report"));
    assert.ok(report.calls <= 100, `trigger ${i + 1} made ${report.calls} calls`);
    reports.push(report);
    if (report.done) break;
  }
  assert.equal(reports.at(-1).done, true);
  assert.ok(reports.length > 1, "more than one trigger");
  const records = recordsOf(await kvNames("CRON_KV"));
  assert.deepEqual(records.m, expectedSurvivors(N, []));
  assert.deepEqual(records.t, []);
  console.log(`# Cron Trigger: ${N} entries, ${reports.length} triggers, calls: ${reports.map((r) => r.calls).join(", ")}`);
});

test("a Durable Object cleans its storage from its alarm, one slice per alarm, until done", async () => {
  const N = 60;
  await call(`/do/seed?now=${NOW}&from=0&to=${N}`);
  await call(`/do/delete?now=${NOW}&key=${key(1)}&key=${key(2)}`);
  await call(`/do/arm?now=${NOW + HOUR}`);
  let state;
  for (let i = 0; i < 200; i++) {
    state = await call("/do/state");
    if (state.slices.at(-1)?.done) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const slices = state.slices;
  assert.equal(slices.at(-1).done, true, JSON.stringify(slices));
  assert.ok(slices.length > 1, "more than one alarm");
  assert.ok(slices.every((s) => s.ops <= 30), `ops per slice: ${slices.map((s) => s.ops)}`);
  // Re-armed for the next period, in the future.
  assert.ok(state.alarm > Date.now() + HOUR / 2, `alarm at ${state.alarm}`);
  const { names } = await call("/do/raw");
  const records = recordsOf(names);
  assert.deepEqual(records.m, expectedSurvivors(N, [1, 2]));
  assert.deepEqual(records.t, []);
  assert.equal(slices.at(-1).deleted.expired.count, (N * 3) / 10);
  console.log(`# Durable Object: ${N} entries, ${slices.length} alarms, ops per alarm (limit 30): ${slices.map((s) => s.ops).join(", ")}`);
});

for (const [label, path, bucket] of [
  ["Workers KV", "/scenario/kv-r2", "BUCKET"],
  ["a Durable Object", "/do/scenario-r2?do=r2", "DO_BUCKET"],
]) {
  test(`${label} with blob bytes in R2: the cleanup scenario, bytes gone with their records`, async () => {
    const out = await call(path);
    checkScenario(out, assert);
    // The bytes are in the bucket, not in the records' store.
    const objects = (await (await mf.getR2Bucket(bucket)).list()).objects.map((o) => o.key);
    assert.deepEqual(recordsOf(objects).b, out.expected.blobs);
  });
}

test("collectR2Orphans finds bytes whose record is gone, after their grace, and a dry run deletes nothing", async () => {
  const out = await call("/do/r2-orphans?do=orphans");
  assert.deepEqual(out.young.orphans, []);
  assert.equal(out.dry.orphans.length, 1);
  assert.equal(out.dry.deleted, 0);
  assert.equal(out.real.deleted, 1);
  assert.equal(out.after.orphans.length, 0);
  assert.equal(out.kept, true, "a recorded blob is never an orphan");
});

test("a Durable Object store alone: the cleanup scenario, split values and their chunks deleted with them", async () => {
  const out = await call("/do/scenario?do=plain");
  checkScenario(out, assert);
  const { names } = await call("/do/chunks?do=plain");
  const owners = [...new Set(names.map((n) => n.slice("kvsweep-chunk/".length, n.lastIndexOf("/"))))];
  // The 200,000-byte blob is over 128 KiB: split; the 150,000-byte one went with its chunks.
  assert.deepEqual(owners.map((o) => o.slice(o.indexOf("\0") + 1)), [out.expected.blobs.find((b) => names.some((n) => n.includes(b)))]);
  assert.equal(names.length, 2);
});

test("a Durable Object stores a split value's chunks as their own bytes: 5 MiB goes in and comes back", async () => {
  const out = await call("/do/big?do=big");
  assert.equal(out.same, true);
  assert.equal(out.blobBack, 300 * 1024);
  assert.ok(out.chunks.length >= 40, JSON.stringify(out.chunks.length));
  for (const [length, buffer] of out.chunks) {
    assert.ok(length <= 128 * 1024, `a chunk of ${length} bytes`);
    assert.equal(buffer, length, "a stored chunk holds its own bytes alone");
  }
});

test("a Durable Object's kvsweep writes made at once in one event do not interleave", async () => {
  const out = await call("/do/concurrent?do=conc");
  assert.match(out.refused ?? "", /referenced/);
  assert.equal(out.child, "shared");
  assert.equal(out.rebuilt.raised + out.rebuilt.lowered, 0, JSON.stringify(out.rebuilt));
});
