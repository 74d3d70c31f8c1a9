// A service worker with real Workbox routes and strategies, kvsweep's
// expirationPlugin in place of ExpirationPlugin (tests/e2e/workbox.test.mjs
// bundles it with esbuild into tests/shared/.gen/).
import { registerRoute } from "workbox-routing";
import { CacheFirst } from "workbox-strategies";
import { ready, expirationPlugin } from "/pkg/sw.js";

const one = expirationPlugin({ maxEntries: 1 });
const age = expirationPlugin({ maxAgeSeconds: 1 });
const bytes = expirationPlugin({ maxBytes: 60, pinned: (url) => url.endsWith("/keep") });

registerRoute(({ url }) => url.pathname.startsWith("/tests/data/one/"), new CacheFirst({ cacheName: "one", plugins: [one] }));
registerRoute(({ url }) => url.pathname.startsWith("/tests/data/age/"), new CacheFirst({ cacheName: "age", plugins: [age] }));
registerRoute(({ url }) => url.pathname.startsWith("/tests/data/bytes/"), new CacheFirst({ cacheName: "bytes", plugins: [bytes] }));

self.addEventListener("install", (event) => {
  self.skipWaiting();
  event.waitUntil(ready());
});
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("message", (event) => {
  if (event.data === "delete") {
    event.waitUntil(one.deleteCacheAndMetadata().then(() => event.source.postMessage("deleted")));
  }
});
