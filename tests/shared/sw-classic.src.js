// A classic service worker, bundled as a script (esbuild --format=iife), as
// Workbox's injectManifest builds them: kvsweep/sw bundled in, with no
// import.meta.url to find kvsweep_bg.wasm by, so it is given to ready()
// (tests/e2e/sw-entry.test.mjs bundles and registers it).
import { ready, Sweeper, openIndexedDb } from "../../pkg/sw.js";
import { answerMessages } from "./sw-harness.js";

answerMessages(async (data) => {
  const out = {};
  // Without its URL the bundle says what to do.
  await openIndexedDb(data.db).catch((e) => (out.early = e.message));
  await ready(new URL("/pkg/kvsweep_bg.wasm", self.location));
  const store = await openIndexedDb(data.db);
  const sweeper = new Sweeper(store);
  for (let i = 0; i < 50; i++) await sweeper.put(`k${i}`, { i }, { ttlMs: i % 2 ? 1 : 60_000 });
  await new Promise((r) => setTimeout(r, 5));
  out.deleted = (await sweeper.run()).deleted.expired?.count;
  out.value = (await sweeper.get("k4"))?.i === 4;
  store.close();
  return out;
});
