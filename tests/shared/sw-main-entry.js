// A module service worker importing the package's main entry, whose
// top-level await service workers forbid: registration fails
// (tests/e2e/sw-entry.test.mjs shows it, and that kvsweep/sw works).
import { memoryStore } from "/pkg/index.js";

self.addEventListener("message", (event) => event.source.postMessage({ kind: memoryStore().kind }));
