// A dedicated module worker running kvsweep's scheduler (tests/e2e/schedule.test.mjs):
// it fills a store with expired entries, asks for a background run, and posts
// back what the run did. The database's name comes in the worker's URL
// (?db=…): a message could arrive before the module's top-level await ends.
import { Sweeper, openIndexedDb } from "/pkg/index.js";

const db = new URL(self.location.href).searchParams.get("db");
{
  try {
    const store = await openIndexedDb(db);
    let held;
    const ended = new Promise((resolve) => {
      self.sweeper = new Sweeper(store, {
        schedule: {
          debounceMs: 0,
          periodMs: 0,
          onRun: (e) => {
            // While the run goes, the lock it took is held.
            if (e.type === "start") held = navigator.locks.query().then((q) => q.held.map((l) => l.name));
            else resolve(e.type);
          },
        },
      });
    });
    for (let i = 0; i < 100; i++) await self.sweeper.put(`w${i}`, i, { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    self.sweeper.request("full");
    const type = await ended;
    self.postMessage({ type, stats: self.sweeper.stats(), held: await held, db });
  } catch (e) {
    self.postMessage({ type: "failed", message: String(e?.stack ?? e) });
  }
}
