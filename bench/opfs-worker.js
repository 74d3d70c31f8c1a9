// The OPFS benchmark in a dedicated worker (scripts/bench-opfs.mjs); its
// arguments come in the worker's name.
import * as kv from "/pkg/index.js";
import { benchOpfs } from "/bench/opfs-bench.js";

const [n, size, rounds] = self.name.split(",").map(Number);
try {
  self.postMessage(await benchOpfs(kv, n, size, rounds));
} catch (e) {
  self.postMessage({ error: String(e?.stack ?? e) });
}
