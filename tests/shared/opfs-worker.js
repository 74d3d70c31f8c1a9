// A dedicated worker running the key–value scenario on an OPFS store (issue
// #11): in a worker, blob files are written through sync access handles.
import * as kv from "/pkg/index.js";
import { kvScenario } from "/tests/shared/kv-scenario.mjs";
import { opfsNames } from "/tests/shared/store-names.js";

// The store's name is the worker's (a message could come before the module
// has loaded, and be lost).
const name = self.name;
try {
  await kv.deleteOpfs(name);
  const store = await kv.openOpfs(name);
  const { sweeper, ...out } = await kvScenario(kv, store, () => opfsNames(name));
  sweeper.close();
  store.close();
  await kv.deleteOpfs(name);
  self.postMessage({ out, sync: typeof FileSystemFileHandle.prototype.createSyncAccessHandle === "function" });
} catch (e) {
  self.postMessage({ error: String(e?.stack ?? e) });
}
