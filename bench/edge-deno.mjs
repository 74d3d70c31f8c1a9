// bench/edge.mjs's Deno KV row, run in real Deno: prints one JSON line.
import process from "node:process";
import { Sweeper, kvStore } from "../pkg/index.js";

const N = Number(Deno.args[0] ?? 4000);
const kv = await Deno.openKv(":memory:");
let now = 1_800_000_000_000;
const sweeper = new Sweeper(kvStore(kv), { clock: () => now });
const items = Array.from({ length: N }, (_, i) => ({ key: `k${String(i).padStart(6, "0")}`, value: { i }, ttlMs: i % 2 ? 1000 : 3_600_000 }));
for (let i = 0; i < items.length; i += 25) await sweeper.putMany(items.slice(i, i + 25));
now += 10_000;
const cpu = process.cpuUsage();
const wall = performance.now();
let report;
let slices = 0;
let largest = 0;
do {
  report = await sweeper.run({ maxOps: 1000 });
  slices++;
  largest = Math.max(largest, report.ops ?? 0);
} while (!report.done);
const used = process.cpuUsage(cpu);
console.log(JSON.stringify({ backend: "Deno KV (memory, Deno)", deleted: report.deleted.expired?.count ?? 0, cpuS: (used.user + used.system) / 1e6, wallS: (performance.now() - wall) / 1000, slices, largest, maxOps: 1000 }));
