// The maintenance operations (issue #12) timed in a page: each on a store of
// `n` entries in ten namespaces, on IndexedDB and on the memory store; and
// verify over `blobs` blobs of `bytes` each, beside crypto.subtle.digest over
// the same bytes. Run by scripts/bench-maint.mjs.
const DAY = 86_400_000;

export async function benchMaint(kv, n, blobs, bytes) {
  const rows = [];
  const time = async (backend, op, size, fn) => {
    const t = performance.now();
    const result = await fn();
    rows.push({ backend, op, size, ms: performance.now() - t });
    return result;
  };
  for (const backend of ["indexeddb", "memory"]) {
    const store = backend === "indexeddb" ? await kv.openIndexedDb(`maint-bench-${Date.now()}`) : kv.memoryStore();
    let now = 1_700_000_000_000;
    const s = new kv.Sweeper(store, { clock: () => now });
    for (let i = 0; i < n; i += 1000) {
      // The first half written 40 days before the second.
      if (i === Math.floor(n / 2000) * 1000) now += 40 * DAY;
      const items = [];
      for (let j = i; j < Math.min(n, i + 1000); j++) {
        items.push({ key: `k${String(j).padStart(7, "0")}`, value: "x".repeat(200), namespace: `ns${j % 10}` });
      }
      await s.putMany(items);
    }
    const recent = await time(backend, "history({ limit: 50 }), every namespace", n, () => s.history({ limit: 50 }));
    await time(backend, "history({ namespace, limit: 50 })", n / 10, () => s.history({ namespace: "ns3", limit: 50 }));
    await time(backend, "detail(key)", n, () => s.detail(recent[0].key, { namespace: recent[0].namespace }));
    await time(backend, "resolvePrefix (ambiguous, 20 listed)", n / 10, () => s.resolvePrefix("k00", { namespace: "ns3" }));
    await time(backend, "zombies()", n, () => s.zombies());
    await time(backend, "health()", n, () => s.health());
    await time(backend, "health({ maxBacklog }): a full plan too", n, () => s.health({ maxBacklog: n }));
    const migrated = await time(backend, "migrate(), every record current", n, () => s.migrate());
    if (migrated.current !== n || migrated.upgraded !== 0) throw new Error(`migrate: ${JSON.stringify(migrated)}`);
    const pruned = await time(backend, "prune({ olderThanMs: 30 days }), half deleted", n, () => s.prune({ olderThanMs: 30 * DAY }));
    if (pruned.deleted.maxAge?.count !== n / 2) throw new Error(`prune deleted ${JSON.stringify(pruned.deleted)}`);
    await time(backend, "deleteNamespace (a tenth of what is left)", n / 20, () => s.deleteNamespace("ns1"));
    const left = n / 2 - n / 20;
    const moved = await time(backend, "moveTo(memoryStore()), what is left", left, () => s.moveTo(kv.memoryStore()));
    if (moved.entries !== left) throw new Error(`moveTo moved ${moved.entries} of ${left}`);
    s.close();
  }
  // verify: hashing the blobs again, against the browser's own SHA-256.
  const s = new kv.Sweeper(await kv.openIndexedDb(`maint-verify-${Date.now()}`));
  const data = [];
  for (let i = 0; i < blobs; i++) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b.subarray(0, 65536));
    b[bytes - 1] = i;
    data.push(b);
    await s.putBlob(b);
  }
  const mib = (blobs * bytes) / (1 << 20);
  const report = await time("indexeddb", "verify()", blobs, () => s.verify());
  if (report.checked !== blobs || report.corrupt.length) throw new Error(`verify: ${JSON.stringify(report)}`);
  let t = performance.now();
  for (const b of data) await crypto.subtle.digest("SHA-256", b);
  const subtle = performance.now() - t;
  s.close();
  return { rows, verify: { mib, ms: rows.at(-1).ms, subtleMs: subtle } };
}
