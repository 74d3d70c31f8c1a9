// A dedicated module worker running kvsweep's scheduler (tests/e2e/schedule.test.mjs):
// it fills a store with expired entries, asks for a background run, and posts
// back what the run did. The database's name comes in the worker's URL
// (?db=…): a message could arrive before the module's top-level await ends.
import { Sweeper, openIndexedDb } from "/pkg/index.js";

const db = new URL(self.location.href).searchParams.get("db");
{
  try {
    const store = await openIndexedDb(db);
    const ended = new Promise((resolve) => {
      self.sweeper = new Sweeper(store, {
        schedule: { debounceMs: 0, periodMs: 0, onRun: (e) => e.type !== "start" && resolve(e.type) },
      });
    });
    for (let i = 0; i < 100; i++) await self.sweeper.put(`w${i}`, i, { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    self.sweeper.request("full");
    const type = await ended;
    self.postMessage({ type, stats: self.sweeper.stats(), locks: "locks" in navigator });
  } catch (e) {
    self.postMessage({ type: "failed", message: String(e?.stack ?? e) });
  }
}
