// A module service worker running kvsweep's scheduler
// (tests/e2e/schedule.test.mjs). Service workers may not use top-level await,
// so it imports the wasm-bindgen glue and initialises it inside the event.
import init, { Sweeper, openIndexedDb } from "/pkg/kvsweep.js";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  event.waitUntil(
    (async () => {
      try {
        await init({ module_or_path: new URL("/pkg/kvsweep_bg.wasm", self.location.href) });
        const store = await openIndexedDb(event.data.db);
        let sweeper;
        let held;
        const ended = new Promise((resolve) => {
          sweeper = new Sweeper(store, {
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
        for (let i = 0; i < 100; i++) await sweeper.put(`sw${i}`, i, { ttlMs: 1 });
        await new Promise((r) => setTimeout(r, 5));
        sweeper.request("full");
        const type = await ended;
        event.source.postMessage({ type, stats: sweeper.stats(), held: await held, db: event.data.db });
        sweeper.close();
      } catch (e) {
        event.source.postMessage({ type: "failed", message: String(e?.stack ?? e) });
      }
    })(),
  );
});
