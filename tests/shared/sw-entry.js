// A module service worker using the package's service-worker entry
// (kvsweep/sw) as a user would: imported statically, no top-level await,
// loaded on first use inside an event (tests/e2e/sw-entry.test.mjs).
import { ready, Sweeper, openIndexedDb, memoryStore } from "/pkg/sw.js";
import { answerMessages } from "./sw-harness.js";

answerMessages(async (data) => {
  const out = {};
  // Before ready(): a constructor says what to do.
  try {
    memoryStore();
  } catch (e) {
    out.early = e.message;
  }
  // An async function loads the module itself.
  const store = await openIndexedDb(data.db);
  await ready();
  const sweeper = new Sweeper(store);
  for (let i = 0; i < 50; i++) await sweeper.put(`k${i}`, { i, at: new Date(i) }, { ttlMs: i % 2 ? 1 : 60_000 });
  await new Promise((r) => setTimeout(r, 5));
  const report = await sweeper.run();
  out.deleted = report.deleted.expired?.count;
  const v = await sweeper.get("k4");
  out.value = v.i === 4 && v.at instanceof Date && v.at.getTime() === 4;
  store.close();
  return out;
});
