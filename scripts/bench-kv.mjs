// kvStore over unstorage in Node (run by npm run bench, or alone): putMany,
// keys() and a full run deleting half, on the memory and fs drivers, each
// beside plain unstorage code doing the same job in the same run. N entries
// (env N, default 20,000; 2,000 on the last driver, a backend of 1 ms a
// call, as a network store is). On fs, kvsweep keeps the records it rewrites
// in place twice (a copy against a torn write), which plain code does not.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStorage } from "unstorage";
import fsDriver from "unstorage/drivers/fs";
import { Sweeper, kvStore } from "../pkg/node.js";

const N = Number(process.env.N ?? 20_000);
const value = "x".repeat(200);
const time = async (fn) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

async function measure(make, N) {
  const out = {};
  // kvsweep: putMany in chunks of 1,000, keys(), then a run under maxEntries N/2.
  {
    const { storage, done } = await make();
    const s = new Sweeper(kvStore(storage), { policy: { maxEntries: N / 2 } });
    out.put = await time(async () => {
      for (let i = 0; i < N; i += 1000) {
        await s.putMany(Array.from({ length: Math.min(1000, N - i) }, (_, j) => ({ key: `k${String(i + j).padStart(7, "0")}`, value })));
      }
    });
    let n = 0;
    out.keys = await time(async () => {
      for await (const _ of s.keys()) n++;
    });
    if (n !== N) throw new Error(`keys() listed ${n}, not ${N}`);
    const report = await time(() => s.run({ mode: "full" }));
    out.run = report;
    s.close();
    await done();
  }
  // Plain unstorage: one setItemRaw each, getKeys and a read of each, a removeItem of half.
  {
    const { storage, done } = await make();
    const bytes = new TextEncoder().encode(value);
    out.putBase = await time(async () => {
      for (let i = 0; i < N; i++) await storage.setItemRaw(`k${String(i).padStart(7, "0")}`, bytes);
    });
    out.keysBase = await time(async () => {
      const keys = (await storage.getKeys()).sort();
      for (const k of keys) await storage.getItemRaw(k);
    });
    out.runBase = await time(async () => {
      const keys = (await storage.getKeys()).sort();
      for (const k of keys.slice(0, N / 2)) await storage.removeItem(k);
    });
    await done();
  }
  return out;
}

// A custom unstorage driver over a Map, each call taking a 1 ms timer.
const slow = async () => {
  const map = new Map();
  const wait = () => new Promise((r) => setTimeout(r, 1));
  const driver = {
    name: "slow",
    hasItem: async (k) => (await wait(), map.has(k)),
    getItem: async (k) => (await wait(), map.get(k) ?? null),
    getItemRaw: async (k) => (await wait(), map.get(k) ?? null),
    setItem: async (k, v) => void (await wait(), map.set(k, v)),
    setItemRaw: async (k, v) => void (await wait(), map.set(k, v)),
    removeItem: async (k) => void (await wait(), map.delete(k)),
    getKeys: async () => (await wait(), [...map.keys()]),
  };
  return { storage: createStorage({ driver }), done: async () => {} };
};
const memory = async () => ({ storage: createStorage(), done: async () => {} });
const fs = async () => {
  const dir = await mkdtemp(join(tmpdir(), "kvsweep-bench-kv-"));
  return { storage: createStorage({ driver: fsDriver({ base: dir }) }), done: () => rm(dir, { recursive: true, force: true }) };
};

console.log(`\n## kvStore over unstorage (Node ${process.version}), ${N.toLocaleString("en")} entries of 200 bytes\n`);
console.log("| driver | operation | kvsweep | plain unstorage code | plain time / kvsweep time |");
console.log("| --- | --- | --- | --- | --- |");
for (const [name, make, n] of [["memory", memory, N], ["fs", fs, N], ["1 ms a call, 2,000 entries", slow, 2000]]) {
  const r = await measure(make, n);
  const row = (op, k, b, what) => console.log(`| ${name} | ${op} | ${Math.round(r[k])} ms | ${Math.round(r[b])} ms (${what}) | ${(r[b] / r[k]).toFixed(2)} |`);
  row("put", "put", "putBase", "setItemRaw each");
  row("keys()", "keys", "keysBase", "getKeys, then getItemRaw each");
  row("full run deleting half", "run", "runBase", "getKeys, then removeItem of half");
}
