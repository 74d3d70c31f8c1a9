// Run by tests/edge/deno.test.mjs in real Deno (npm `deno`): the cleanup
// scenario on Deno KV in memory and in a file, and two cleaners on one file
// where only one holds the run lease. Prints one JSON line per check.
import assert from "node:assert/strict";
import * as pkg from "../../pkg/index.js";
import { kvScenario, checkScenario } from "../shared/kv-scenario.mjs";

const dir = Deno.args[0];

async function names(kv) {
  const out = [];
  for await (const e of kv.list({ prefix: [] })) if (e.key.length === 1) out.push(e.key[0]);
  return out;
}

async function scenario(label, path) {
  const kv = await Deno.openKv(path);
  const store = pkg.kvStore(kv);
  assert.equal(store.kind, "deno-kv");
  assert.equal(store.capabilities().compareAndSet, true);
  const out = await kvScenario(pkg, store, () => names(kv));
  checkScenario(out, assert);
  // Values over Deno KV's 64 KiB went in chunks; those of the deleted blob went with it.
  const chunked = new Set();
  let chunks = 0;
  for await (const e of kv.list({ prefix: ["kvsweep-chunk"] })) {
    chunks++;
    chunked.add(e.key[1]);
  }
  const owners = [...chunked].map((n) => n.slice(n.indexOf("\0") + 1)).sort();
  assert.deepEqual(owners.filter((o) => o.length === 64), out.expected.blobs.filter((b) => owners.includes(b)));
  assert.equal(owners.length, 2, `chunked records: ${owners}`); // the large blob and big-value's value
  assert.equal(chunks, 4 + 2, `chunks: ${chunks}`);
  kv.close();
  console.log(JSON.stringify({ ok: label, runs: out.reports.length, chunks }));
}

// Deno KV expires by itself only an entry that stands alone, judged by the
// last write of its record in a commit: an entry written, then referenced by
// one written after it in the same putMany, is left to runs (the backend
// would drop it while it is live).
{
  const kv = await Deno.openKv(":memory:");
  const expireIn = new Map(); // record name → the expireIn of its last write
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const a = atomic();
    const set = a.set.bind(a);
    a.set = (key, value, options) => {
      if (key.length === 1 && key[0].includes("/m/")) expireIn.set(key[0].slice(key[0].indexOf("\0") + 1), options?.expireIn);
      return set(key, value, options);
    };
    return a;
  };
  const s = new pkg.Sweeper(pkg.kvStore(kv));
  await s.putMany([
    { key: "child", value: "c", ttlMs: 60_000 },
    { key: "parent", value: "p", refs: ["child"] },
    { key: "alone", value: "a", ttlMs: 60_000 },
  ]);
  assert.equal(expireIn.get("child"), undefined, "a referenced entry is left to runs");
  assert.equal(expireIn.get("parent"), undefined);
  assert.ok(expireIn.get("alone") > 60_000, "an entry alone expires natively, a margin after it expires");
  // Expiry past what Deno KV's expireIn takes is left to runs.
  await s.put("far", 1, { expiresAt: 8.64e15 });
  assert.equal(await s.get("far"), 1);
  assert.equal(expireIn.get("far"), undefined);
  kv.close();
  console.log(JSON.stringify({ ok: "native expiry" }));
}

await scenario("memory", ":memory:");
await scenario("file", `${dir}/scenario.sqlite`);

// Two cleaners, each with its own connection to one file: while one runs,
// the other's run stops at once with stopped "leased".
{
  const path = `${dir}/lease.sqlite`;
  const kvA = await Deno.openKv(path);
  const kvB = await Deno.openKv(path);
  const a = new pkg.Sweeper(pkg.kvStore(kvA), { batchSize: 10 });
  const b = new pkg.Sweeper(pkg.kvStore(kvB), { batchSize: 10 });
  for (let i = 0; i < 100; i++) await a.put(`k${i}`, i, { ttlMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  const seen = [];
  const report = await a.run({
    onProgress: async () => {
      seen.push(await b.run());
    },
  });
  assert.equal(report.done, true);
  assert.equal(report.deleted.expired.count, 100);
  assert.ok(seen.length > 1);
  assert.ok(seen.every((r) => r.done === false && r.stopped === "leased"), JSON.stringify(seen));
  assert.equal((await b.run()).done, true);
  // A commit over Deno KV's 800 KiB is refused before any chunk is written.
  // The first value is over 64 KiB: were its chunks written before the size
  // check, they would be left behind.
  const big = Array.from({ length: 20 }, (_, i) => ({ key: `big${i}`, value: new Uint8Array(i === 0 ? 70_000 : 60_000).fill(i) }));
  await assert.rejects(a.putMany(big), /putMany: .*a Deno KV commit would hold .* over Deno KV's limits \(1,000, 100, 800 KiB and 80 KiB of keys\)/);
  let left = 0;
  for await (const _ of kvA.list({ prefix: ["kvsweep-chunk"] })) left++;
  assert.equal(left, 0, "no chunk left behind");
  assert.equal(await a.get("big0"), undefined);
  // Keys: one that Deno KV would refuse with its prefix, suffix or a
  // chunk's key is refused at put, by name; one commit's keys are held to
  // Deno KV's 80 KiB before anything is written; a key no record could
  // have is read as absent.
  await assert.rejects(a.put("k".repeat(1990), new Uint8Array(100_000)), /^Error: kvsweep: put\("k{100}"…\): key is 1990 bytes, too long for a deno-kv store: .* \(a key may have at most \d+ bytes\)$/);
  const room = Number(/a key may have at most (\d+) bytes/.exec(await a.put("k".repeat(1990), 1).catch((e) => e.message))[1]);
  await a.put("k".repeat(room), new Uint8Array(100_000).fill(3));
  assert.equal((await a.get("k".repeat(room))).length, 100_000);
  const longKeys = Array.from({ length: 60 }, (_, i) => ({ key: `${i}`.padStart(1800, "k"), value: i }));
  await assert.rejects(a.putMany(longKeys), /putMany: .*bytes of keys, over Deno KV's limits/);
  assert.equal(await a.get(longKeys[0].key), undefined);
  assert.equal(await a.get("k".repeat(3000)), undefined);
  // Two writers rewriting one split value at once: the loser's check fails and
  // it writes again; every value read is whole, and only the last one's
  // chunks remain.
  const v = (n) => new Uint8Array(100_000).fill(n);
  await a.put("split", v(1));
  await Promise.all([a.put("split", v(2)), b.put("split", v(3))]);
  const got = await a.get("split");
  assert.ok(got.length === 100_000 && (got.every((x) => x === 2) || got.every((x) => x === 3)), "a whole value");
  let splitChunks = 0;
  for await (const e of kvA.list({ prefix: ["kvsweep-chunk"] })) if (e.key[1].endsWith("\0split") || e.key[1].includes("\0split\u0001")) splitChunks++;
  assert.equal(splitChunks, 2, `chunks of "split": ${splitChunks}`);
  // A putMany over Deno KV's limits of one commit is refused whole, saying so.
  const many = Array.from({ length: 150 }, (_, i) => ({ key: `m${i}`, value: i }));
  await assert.rejects(a.putMany(many), { message: "kvsweep: putMany: items would check 150 records (each entry's and what it references) in one commit, more than the 100 this store checks at once: split it over several calls" });
  assert.equal(await a.get("m0"), undefined);
  // 100 new entries referencing nothing fit one commit; one more reference does not.
  await a.putMany(many.slice(0, 100));
  assert.equal(await a.get("m99"), 99);
  const refs = Array.from({ length: 100 }, (_, i) => `m${i}`);
  await assert.rejects(a.put("hub", 1, { refs }), { message: 'kvsweep: put: "hub" references 100 entries and blobs, more than the 99 this store lets one entry reference (its deletion checks each in one commit)' });
  await a.put("hub", 1, { refs: refs.slice(0, 99) });
  // Added to later, past what its deletion could check: refused too (the
  // write itself would check only the new ones).
  await assert.rejects(a.put("hub", 2, { refs }), /^Error: kvsweep: put: "hub" references 100 entries and blobs, more than the 99/);
  assert.equal(await a.delete("hub"), true, "deletable");
  // A Sweeper new to the store registers the namespace by a write, not a
  // check: 100 new entries still fit. Swapping 50 references for 50 others
  // checks all 100 and the entry: refused first, by name.
  const fresh = new pkg.Sweeper(pkg.kvStore(kvA));
  const f = Array.from({ length: 100 }, (_, i) => `f${i}`);
  await fresh.putMany(f.map((key, i) => ({ key, value: i, namespace: "fresh" })));
  await fresh.put("swap", 1, { namespace: "fresh", refs: f.slice(0, 50) });
  await assert.rejects(fresh.put("swap", 2, { namespace: "fresh", refs: f.slice(50) }), { message: "kvsweep: put: this put would check 101 records (each entry's and what it references) in one commit, more than the 100 this store checks at once: split it over several calls" });
  kvA.close();
  kvB.close();
  console.log(JSON.stringify({ ok: "lease", blocked: seen.length }));
}

// What a write costs in Deno KV calls: a put of a new entry is one commit;
// a run's batch reads its entries (a getMany per ten) and commits once, and
// does not read them again for their chunks.
{
  const kv = await Deno.openKv(":memory:");
  // Every call the store makes: reads, commits, listings.
  let made = 0;
  for (const m of ["get", "getMany", "list", "atomic"]) {
    const f = kv[m].bind(kv);
    kv[m] = (...args) => (made++, f(...args));
  }
  const store = pkg.kvStore(kv);
  const sweeper = new pkg.Sweeper(store, { batchSize: 50 });
  await sweeper.put("first", 0);
  const calls = async (fn) => {
    const before = made;
    await fn();
    return made - before;
  };
  const put = await calls(async () => {
    for (let i = 0; i < 100; i++) await sweeper.put(`c${i}`, i, { ttlMs: 1 });
  });
  assert.equal(put, 100, "one commit per put of a new entry");
  await new Promise((r) => setTimeout(r, 5));
  const listing = await calls(() => sweeper.plan());
  let report;
  const run = await calls(async () => (report = await sweeper.run()));
  assert.equal(report.deleted.expired.count, 100);
  // The run: its listing, two batches of (5 getMany + 1 commit), and 7 for
  // its lease (taken, given back), cursor and history. Reading each batch's
  // entries again for their chunks would make 10 more.
  assert.ok(run <= listing + 2 * 6 + 7, `the run made ${run} calls, its listing ${listing}`);
  kv.close();
  console.log(JSON.stringify({ ok: "calls", put, run, listing }));
}

// Thirty writes of one isolate at once, to one record or referencing one
// entry, all succeed (their checks fail, then they go again one at a
// time), on Deno KV in memory and in a file; the counts stay right.
for (const path of [":memory:", `${dir}/concurrent.sqlite`]) {
  const kv = await Deno.openKv(path);
  const sweeper = new pkg.Sweeper(pkg.kvStore(kv));
  await sweeper.put("target", "t");
  const results = await Promise.allSettled([
    ...Array.from({ length: 30 }, (_, i) => sweeper.put("counter", i)),
    ...Array.from({ length: 30 }, (_, i) => sweeper.put(`r${i}`, i, { refs: ["target"] })),
  ]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  assert.deepEqual(failed, [], `${failed.length} of 60 concurrent puts failed`);
  assert.ok(Number.isInteger(await sweeper.get("counter")));
  const rebuilt = await sweeper.rebuild();
  assert.deepEqual([rebuilt.entriesFixed, rebuilt.blobsFixed], [0, 0], "reference counts were right");
  kv.close();
  console.log(JSON.stringify({ ok: "concurrent", path: path === ":memory:" ? "memory" : "file" }));
}

// The Deno.cron pattern (README): a cleanup every 10 minutes, each run
// limited to a few seconds. The schedule is registered as a server would
// register it; its handler is called here rather than waiting for the minute.
{
  const kv = await Deno.openKv(":memory:");
  const sweeper = new pkg.Sweeper(pkg.kvStore(kv), { policy: { maxEntries: 50 } });
  const cleanup = () => sweeper.run({ budgetMs: 5_000 });
  const stop = new AbortController();
  Deno.cron("kvsweep cleanup", "*/10 * * * *", { signal: stop.signal }, cleanup);
  for (let i = 0; i < 80; i++) await sweeper.put(`k${String(i).padStart(2, "0")}`, i);
  const report = await cleanup();
  assert.equal(report.done, true);
  assert.equal(report.deleted.maxEntries.count, 30);
  let left = 0;
  for await (const _ of sweeper.keys()) left++;
  assert.equal(left, 50);
  stop.abort();
  kv.close();
  console.log(JSON.stringify({ ok: "cron", evicted: report.deleted.maxEntries.count }));
}
