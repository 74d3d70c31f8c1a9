// Every method called as the README calls it; `tsc --strict` must accept it
// (tests/node/types.test.mjs compiles it against pkg/'s declarations).
import { Sweeper, memoryStore, openIndexedDb, openOpfs, deleteOpfs, openCacheStorage, track, deleteCacheStorage, type Progress, type RunReport, type PlanResult, type RunEvent, type Stats, type EntryDetail, type VerifyReport, type Health, type MoveReport, type MigrateReport, type RunOptions, type KeyOptions, type PutOptions } from "../../pkg/index.js";

export async function usage(): Promise<void> {
  const store = Math.random() < 0.5 ? memoryStore() : await openIndexedDb("my-app");
  const bare = new Sweeper(store);
  const sweeper = new Sweeper(store, {
    policy: {
      maxAgeMs: 7 * 86400e3, maxEntries: 10_000, maxBytes: 50e6, lowWatermark: 0.8,
      groups: { nightly: { keepLast: 5 } },
      namespaces: { "user-42": { maxEntries: 100 } },
    },
    clock: () => Date.now(),
  });
  const id: string = await sweeper.putBlob(new TextEncoder().encode("bytes"));
  await sweeper.putBlob(new ArrayBuffer(4));
  await sweeper.putBlob(new Blob(["text"]));
  await sweeper.put("att/1", null, { namespace: "user-42", blobs: [id], dependent: true });
  await sweeper.put("doc/1", { title: "Notes", tags: new Set(["a"]) }, { namespace: "user-42", ttlMs: 86400e3, refs: ["att/1"] });
  await bare.put("plain", new Map([[1, 2n]]));
  await sweeper.putMany([
    { key: "draft/1", value: "…", namespace: "user-42", group: "nightly" },
    { key: "draft/2", value: "…", namespace: "user-42", group: "nightly", refs: ["draft/1"] },
  ]);
  const value: unknown = await sweeper.get("doc/1", { namespace: "user-42" });
  await bare.get("plain");
  const bytes: Uint8Array | undefined = await sweeper.getBlob(id);
  // Its bytes go where a BlobPart, a BodyInit or a BufferSource goes (TS 5.7+
  // reads a bare Uint8Array as one over any ArrayBufferLike, which they refuse).
  const blobBytes = await sweeper.getBlob(id);
  if (blobBytes) {
    new Blob([blobBytes]);
    new Response(blobBytes);
    await crypto.subtle.digest("SHA-256", blobBytes);
  }
  const existed: boolean = await bare.delete("plain");
  const plan: PlanResult = await sweeper.plan({ mode: "full" });
  await bare.plan();
  const controller = new AbortController();
  const report: RunReport = await sweeper.run({
    mode: "full", signal: controller.signal, budgetMs: 20,
    onProgress: async (p: Progress) => { console.log(p.phase, p.processed); },
  });
  await bare.run();
  if (report.stopped === "closed" || report.stopped === "aborted" || report.stopped === "budget") console.log(report.done);
  for await (const key of sweeper.keys({ namespace: "user-42", prefix: "draft/", limit: 10 })) console.log(key.length);
  for await (const [key, v] of sweeper.entries({ namespace: "user-42" })) console.log(key, v);
  const cleared: RunReport = await sweeper.clear("user-42");
  console.log(cleared.deleted.cleared?.count);
  const scheduled = new Sweeper(store, {
    schedule: {
      periodMs: 86400e3, debounceMs: 1000, maxWaitMs: 10_000, runOnStart: true, autoAfterWrites: 500,
      lockName: "my-app-cleanup", sliceMs: 0, storageFraction: 0.8, retryMs: 1000, retryMaxMs: 900_000,
      onRun: (e: RunEvent) => { if (e.type === "end") console.log(e.report.deleted); else if (e.type === "error") console.log(e.error.message); },
    },
  });
  scheduled.request("light");
  scheduled.request();
  const stats: Stats = scheduled.stats();
  console.log(stats.state, stats.nextRunAt, stats.runs, stats.lastRun?.outcome);
  scheduled.close();
  const progress: Progress = bare.progress();
  console.log(value, bytes, existed, plan.actions.length, progress.running, await bare.rebuild());
  bare.close();
}

/** Blobs as OPFS files, and a Cache Storage cache's responses, as the README uses them. */
export async function browserStores(request: Request, response: Response) {
  const files = await openOpfs("media");
  const media = new Sweeper(files);
  const id: string = await media.putBlob(new Uint8Array([1, 2, 3]));
  await media.put("photo", { caption: "a" }, { blobs: [id] });
  media.close();
  files.close();
  await deleteOpfs("media");
  const responses = await openCacheStorage("api", { matchOptions: { ignoreSearch: true }, concurrency: 64 });
  const api = new Sweeper(responses, { policy: { maxEntries: 50 } });
  await track(api, request, response, { pinned: true });
  await api.run();
  await deleteCacheStorage("api");
}

/** The maintenance operations (SPEC §5), as an operator's console would call them. */
export async function maintenance(sweeper: Sweeper) {
  const recent: EntryDetail[] = await sweeper.history({ namespace: "notes", limit: 20 });
  const one = await sweeper.detail("note-1", { namespace: "notes", includeExpired: true });
  if (one) console.log(one.value, one.updatedAt, one.referrers, recent.length);
  const resolved = await sweeper.resolvePrefix("note-", { namespace: "notes" });
  if ("key" in resolved) console.log(resolved.key);
  else if ("ambiguous" in resolved) console.log(resolved.ambiguous.join(", "));
  else console.log(resolved.none);
  const pruned = await sweeper.prune({ olderThanMs: 30 * 86_400_000 });
  const checked: VerifyReport = await sweeper.verify({ shard: { index: 0, count: 8 }, repair: true });
  const zombies = await sweeper.zombies();
  for (const z of zombies) await sweeper.deleteNamespace(z.namespace);
  const health: Health = await sweeper.health();
  const migrated: MigrateReport = await sweeper.migrate();
  const backlog: Health = await sweeper.health({ maxBacklog: 1000 });
  console.log(migrated.upgraded, migrated.unreadable[0]?.key, backlog.status);
  const moved: MoveReport = await sweeper.moveTo(memoryStore());
  console.log(moved.verified, moved.cleared, moved.left, moved.corrupt.length);
  console.log(pruned.deleted, checked.corrupt, checked.referrers[0]?.blob, health.status, health.reasons, health.runs[0]?.durationMs);
}

/**
 * Options forwarded from a caller's own optional settings hold an explicit
 * `undefined`, which the runtime takes as left out: the declarations accept
 * it under `exactOptionalPropertyTypes` too (tests/node/types.test.mjs).
 */
export async function forwarded(settings: { ttlMs?: number | undefined; namespace?: string | undefined; signal?: AbortSignal | undefined }) {
  const { ttlMs, namespace, signal } = settings;
  const sweeper = new Sweeper(memoryStore(), {
    policy: { maxAgeMs: ttlMs, maxEntries: undefined, groups: undefined },
    clock: undefined, batchSize: undefined, maxValueBytes: undefined,
    schedule: { periodMs: ttlMs, onRun: undefined, lockName: undefined },
  });
  await sweeper.put("k", 1, { namespace, ttlMs, refs: undefined, blobs: undefined, pinned: undefined });
  await sweeper.putMany([{ key: "j", value: 2, namespace, group: undefined }]);
  await sweeper.get("k", { namespace, includeExpired: undefined });
  await sweeper.delete("j", { namespace });
  for await (const key of sweeper.keys({ namespace, prefix: undefined, limit: undefined })) console.log(key);
  await sweeper.plan({ mode: undefined, signal });
  await sweeper.run({ mode: undefined, signal, budgetMs: undefined, maxOps: undefined, leaseMs: undefined, onProgress: undefined });
  await sweeper.history({ namespace, limit: undefined });
  await sweeper.detail("k", { namespace, includeExpired: undefined });
  await sweeper.verify({ shard: undefined, repair: undefined });
  await sweeper.health({ maxBacklog: undefined });
  await sweeper.close();
}

/** What the runtime refuses, the declarations refuse too. */
export async function refused(sweeper: Sweeper, runOptions: RunOptions, keyOptions: KeyOptions) {
  // @ts-expect-error run()'s own options: plan() refuses them
  await sweeper.plan(runOptions);
  // @ts-expect-error delete() takes no includeExpired
  await sweeper.delete("k", keyOptions);
  await sweeper.put("k", 1, { expiresAt: 10, ttlMs: undefined });
  // @ts-expect-error undefined is no value: put refuses it (null records an empty value)
  await sweeper.put("k", undefined);
  // @ts-expect-error nor putMany
  await sweeper.putMany([{ key: "k", value: undefined }]);
  await sweeper.putMany([{ key: "k", value: null }]);
}

/** PutOptions stays an interface an app's own options may extend. */
export interface AppPutOptions extends PutOptions { reason?: string }
