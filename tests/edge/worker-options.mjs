// Miniflare's options for tests/edge/worker.js: shared by the edge tests and
// npm run bench:edge.
export const WORKER_OPTIONS = {
  modules: true,
  scriptPath: "tests/edge/worker.js",
  modulesRoot: ".",
  modulesRules: [
    { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  kvNamespaces: ["KV", "CRON_KV", "R2_KV"],
  r2Buckets: ["BUCKET", "DO_BUCKET"],
  durableObjects: { CLEANER: "Cleaner" },
  compatibilityDate: "2025-01-01",
};
