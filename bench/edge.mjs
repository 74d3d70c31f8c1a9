// npm run bench:edge — entries cleaned per second of CPU on each key–value
// backend (issue #10's closing figures), and the largest slice against its
// limit. Node backends in this process; Deno KV in real Deno; Workers KV and
// a Durable Object in real workerd (miniflare), where CPU time cannot be read
// from outside: their figure is wall time of the cleaning requests.
// Usage: node bench/edge.mjs [entries=4000]
import { execFileSync } from "node:child_process";
import { createStorage } from "unstorage";
import Keyv from "keyv";
import { Miniflare } from "miniflare";
import { WORKER_OPTIONS } from "../tests/edge/worker-options.mjs";
import { Sweeper, kvStore } from "../pkg/node.js";

const N = Number(process.argv[2] ?? 4000);
const POLICY = { orphanGraceMs: 120_000, tempMaxAgeMs: 120_000 };
const T0 = 1_800_000_000_000;

/** Workers KV as documented, in memory (the double of tests/node/kv.test.mjs, without its checks). */
class KvDouble {
  map = new Map();
  calls = 0;
  async get(name) {
    this.calls++;
    return this.map.get(name)?.value.slice().buffer ?? null;
  }
  async getWithMetadata(name) {
    this.calls++;
    const e = this.map.get(name);
    return { value: e?.value ?? null, metadata: e?.metadata ?? null };
  }
  async put(name, value, options = {}) {
    this.calls++;
    this.map.set(name, { value: new Uint8Array(value), metadata: options.metadata });
  }
  async delete(name) {
    this.calls++;
    this.map.delete(name);
  }
  async list({ prefix = "", cursor, limit = 1000 }) {
    this.calls++;
    const names = [...this.map.keys()].filter((n) => n.startsWith(prefix)).sort();
    const at = cursor ? names.findIndex((n) => n > cursor) : 0;
    const from = at < 0 ? names.length : at;
    const page = names.slice(from, from + limit);
    const complete = from + page.length >= names.length;
    return { keys: page.map((name) => ({ name, metadata: this.map.get(name).metadata })), list_complete: complete, cursor: complete ? undefined : page.at(-1) };
  }
}

async function nodeBackend(name, backend, maxOps) {
  let now = T0;
  const sweeper = new Sweeper(kvStore(backend), { clock: () => now, policy: POLICY });
  const items = Array.from({ length: N }, (_, i) => ({ key: `k${String(i).padStart(6, "0")}`, value: { i }, ttlMs: i % 2 ? 1000 : 3_600_000 }));
  for (let i = 0; i < items.length; i += 25) await sweeper.putMany(items.slice(i, i + 25));
  now += 10_000;
  const cpu = process.cpuUsage();
  const wall = performance.now();
  let report;
  let slices = 0;
  let largest = 0;
  do {
    report = await sweeper.run(maxOps ? { maxOps } : {});
    slices++;
    largest = Math.max(largest, report.ops ?? 0);
  } while (!report.done);
  const used = process.cpuUsage(cpu);
  const cpuS = (used.user + used.system) / 1e6;
  const deleted = report.deleted.expired?.count ?? 0;
  return { backend: name, deleted, cpuS, wallS: (performance.now() - wall) / 1000, slices, largest, maxOps };
}

const rows = [];
rows.push(await nodeBackend("Map", new Map()));
rows.push(await nodeBackend("unstorage (memory)", createStorage()));
rows.push(await nodeBackend("keyv (memory)", new Keyv()));
rows.push(await nodeBackend("Workers KV double (Node)", new KvDouble(), 1000));

// Deno KV in memory, in real Deno.
{
  const out = execFileSync("node_modules/.bin/deno", ["run", "--unstable-kv", "--allow-read=.", "--allow-env", "bench/edge-deno.mjs", String(N)], {
    encoding: "utf8",
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
  rows.push(JSON.parse(out.trim().split("\n").at(-1)));
}

// Workers KV and a Durable Object in workerd: wall time of the cleaning requests.
{
  const mf = new Miniflare(WORKER_OPTIONS);
  const M = Math.min(N, 400);
  for (const [label, base, maxOps] of [["Workers KV (workerd)", "", 900], ["Durable Object (workerd)", "/do", 900]]) {
    for (let from = 0; from < M; from += 50) {
      const r = await mf.dispatchFetch(`http://x${base}/seed?now=${T0}&from=${from}&to=${from + 50}&do=bench`);
      await r.json();
    }
    const wall = performance.now();
    let body;
    let slices = 0;
    let largest = 0;
    do {
      body = await (await mf.dispatchFetch(`http://x${base}/run?now=${T0 + 3_600_000}&maxOps=${maxOps}&do=bench`)).json();
      slices++;
      largest = Math.max(largest, body.report.ops ?? 0);
    } while (!body.report.done);
    const wallS = (performance.now() - wall) / 1000;
    rows.push({ backend: label, deleted: body.report.deleted.expired.count, cpuS: null, wallS, slices, largest, maxOps });
  }
  await mf.dispose();
}

console.log(`\nkvsweep on key–value backends: a full run deleting the expired half of ${N} entries (workerd: ${Math.min(N, 400)} entries, 30% expired, batches of 5)\n`);
console.log("| backend | deleted | CPU s | entries/CPU s | wall s | slices | largest slice (calls) / limit |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  const rate = r.cpuS ? Math.round(r.deleted / r.cpuS) : `${Math.round(r.deleted / r.wallS)} (wall)`;
  console.log(`| ${r.backend} | ${r.deleted} | ${r.cpuS?.toFixed(2) ?? "–"} | ${rate} | ${r.wallS.toFixed(2)} | ${r.slices} | ${r.maxOps ? `${r.largest} / ${r.maxOps}` : "no limit"} |`);
}

// Small limits: the most calls a slice made against maxOps on the Workers KV
// double, for stores whose items cost differently (blobs to lower and
// delete, a chain of references, which goes in one batch whatever the limit).
async function smallLimit(n, blobs, chain, maxOps) {
  const kv = new KvDouble();
  let now = T0;
  const sweeper = new Sweeper(kvStore(kv), { clock: () => now, policy: POLICY });
  const key = (i) => `k${String(i).padStart(4, "0")}`;
  for (let i = 0; i < n; i++) {
    const ids = [];
    for (let b = 0; b < blobs; b++) ids.push(await sweeper.putBlob(new Uint8Array([i & 255, i >> 8, b])));
    await sweeper.put(key(i), i, { ttlMs: 10, blobs: ids, refs: chain && i > 0 ? [key(i - 1)] : [] });
  }
  now += 200_000;
  let report;
  let slices = 0;
  let most = 0;
  try {
    do {
      const before = kv.calls;
      report = await sweeper.run({ maxOps });
      most = Math.max(most, kv.calls - before);
      slices++;
    } while (!report.done && slices < 1000);
  } catch (e) {
    return `| ${n} | ${blobs} | ${chain ? "yes" : "no"} | ${maxOps} | rejected: ${e.message.replace(/^kvsweep: run: /, "").slice(0, 40)}… | | |`;
  }
  return `| ${n} | ${blobs} | ${chain ? "yes" : "no"} | ${maxOps} | ${slices} | ${most} | ${report.done} |`;
}

console.log("\nSmall limits on the Workers KV double: every slice's calls against maxOps\n");
console.log("| entries | blobs each | reference chain | maxOps | slices | most calls in a slice | done |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const [n, blobs, chain, maxOps] of [[10, 0, false, 12], [10, 0, false, 20], [10, 0, false, 40], [100, 0, false, 60], [50, 1, false, 60], [20, 5, false, 40], [40, 0, true, 60], [1000, 0, false, 1000]]) {
  console.log(await smallLimit(n, blobs, chain, maxOps));
}
