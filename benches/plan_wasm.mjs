// Runs the planner benchmark built for wasm (examples/plan_bench_wasm.rs) under
// Node and prints it beside the native figure passed in: node plan_wasm.mjs <dir> [nativeMedianSeconds] [entries]
import { createRequire } from "node:module";
import { resolve } from "node:path";

const [dir, nativeMedian, entriesArg] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { benchPlan } = require(resolve(dir, "plan_bench_wasm.js"));
const entries = Number(entriesArg ?? 1_000_000);
const r = benchPlan(entries, 5, () => performance.now());
const times = [...r.timesMs].sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)] / 1000;
console.log(`wasm store: ${r.entries} entries (built in ${(r.builtMs / 1000).toFixed(2)} s), ${r.actions} actions`);
console.log(`wasm plan(): best ${(times[0] / 1000).toFixed(3)} s, median ${median.toFixed(3)} s; ${(r.entries / median / 1e6).toFixed(2)} M entries/s`);
console.log(`wasm memory: grew ${(r.memoryGrowthBytes / 1048576).toFixed(1)} MiB during planning (${(r.memoryGrowthBytes / r.entries).toFixed(1)} B/entry, an upper bound: memory never shrinks); ${(r.memoryBytes / 1048576).toFixed(0)} MiB in all`);
if (nativeMedian) {
  console.log(`wasm/native: ${(median / Number(nativeMedian)).toFixed(2)}x (native median ${Number(nativeMedian).toFixed(3)} s, same run)`);
}
