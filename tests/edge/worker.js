// A Cloudflare Worker that keeps its KV namespace clean with kvsweep, run by
// tests/edge/workers.test.mjs in real workerd (miniflare). Every request
// counts its own KV calls, to show that none passes the per-request limit.
import * as pkg from "../../pkg/workerd.js";
import { kvScenario, kvNamesOf } from "../shared/kv-scenario.mjs";

const { Sweeper, kvStore, durableObjectStore, r2, collectR2Orphans, runFromAlarm, scheduleCleanup } = pkg;

/** The shared scenario (tests/shared/kv-scenario.mjs) on `store`, its outcome as JSON. */
async function scenario(store, names) {
  const { sweeper, ...out } = await kvScenario(pkg, store, names);
  return Response.json(out);
}


async function bucketNames(bucket) {
  const names = [];
  let cursor;
  do {
    const page = await bucket.list({ cursor });
    names.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return names;
}

const LIMIT = 1000; // Workers KV operations per invocation

/** env.KV with every call counted. */
function counted(kv, count) {
  const wrap = (name) => (...args) => {
    count.calls++;
    return kv[name](...args);
  };
  return { get: wrap("get"), put: wrap("put"), delete: wrap("delete"), list: wrap("list"), getWithMetadata: wrap("getWithMetadata") };
}

const policy = { maxEntries: 400, orphanGraceMs: 120_000, tempMaxAgeMs: 120_000 };

// Small batches, so that a run of a few dozen deletions takes several slices.
const batchSize = 5;

async function handle(url, store, count) {
  const now = Number(url.searchParams.get("now"));
  const sweeper = new Sweeper(store, { clock: () => now, policy, batchSize });
  const out = {};
  switch (url.pathname) {
    case "/seed": {
      // Entries `from`..`to`: those ending in 0, 5 or 6 expire in a minute,
      // every fifth references the one before it, odd ones share a blob.
      const from = Number(url.searchParams.get("from"));
      const to = Number(url.searchParams.get("to"));
      const blob = await sweeper.putBlob(new TextEncoder().encode("shared attachment bytes"));
      const items = [];
      for (let i = from; i < to; i++) {
        items.push({
          key: `note-${String(i).padStart(5, "0")}`,
          value: { i, text: `note ${i}` },
          ttlMs: [0, 5, 6].includes(i % 10) ? 60_000 : undefined,
          refs: i % 5 === 4 ? [`note-${String(i - 1).padStart(5, "0")}`] : undefined,
          blobs: i % 2 ? [blob] : undefined,
        });
      }
      for (const item of items) {
        const { key, value, ...options } = item;
        await sweeper.put(key, value, options);
      }
      out.blob = blob;
      break;
    }
    case "/delete": {
      for (const key of url.searchParams.getAll("key")) out[key] = await sweeper.delete(key);
      break;
    }
    case "/get": {
      out.value = (await sweeper.get(url.searchParams.get("key"))) ?? null;
      break;
    }
    case "/run": {
      const maxOps = Number(url.searchParams.get("maxOps") || 900);
      out.report = await sweeper.run({ mode: "full", maxOps });
      break;
    }
    case "/plan": {
      const plan = await sweeper.plan();
      out.summary = plan.summary;
      out.actions = plan.actions.length;
      break;
    }
    default:
      return new Response("not found", { status: 404 });
  }
  out.calls = count.calls;
  out.limit = LIMIT;
  return Response.json(out);
}

export default {
  // The Cron Trigger pattern: each trigger cleans one slice, within the
  // invocation's call limit; the next trigger goes on where it stopped.
  async scheduled(controller, env, ctx) {
    const count = { calls: 0 };
    const sweeper = new Sweeper(kvStore(counted(env.CRON_KV, count)), {
      clock: () => controller.scheduledTime,
      policy,
      batchSize,
    });
    ctx.waitUntil(
      sweeper.run({ maxOps: 100 }).then((report) =>
        env.CRON_KV.put("test:last-report", JSON.stringify({ ...report, calls: count.calls })),
      ),
    );
  },

  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/r2-tampered") {
      // Blob bytes overwritten in R2 by other code: getBlob refuses them.
      const store = kvStore(env.R2_KV, { prefix: "tamper/", blobs: r2(env.BUCKET) });
      const sweeper = new Sweeper(store);
      const id = await sweeper.putBlob(new TextEncoder().encode("the right bytes"));
      const before = new TextDecoder().decode(await sweeper.getBlob(id));
      const names = (await bucketNames(env.BUCKET)).filter((n) => n.startsWith("tamper/") && n.includes(id));
      for (const n of names) await env.BUCKET.put(n, "other bytes");
      const after = await sweeper.getBlob(id).then((b) => `returned ${b.length} bytes`, (e) => e.message);
      await sweeper.close();
      return Response.json({ id, before, objects: names.length, after });
    }
    if (url.pathname.startsWith("/lru/")) {
      // The README's pattern: a Sweeper per request, closed in waitUntil,
      // so that a read's deferred refresh of accessedAt is written.
      const now = Number(url.searchParams.get("now"));
      const store = kvStore(env.KV, { prefix: "lru/" });
      const sweeper = new Sweeper(store, { clock: () => now, policy: { maxEntries: 2 } });
      const out = {};
      if (url.pathname === "/lru/put") for (const key of ["a", "b", "c"]) await sweeper.put(key, key);
      if (url.pathname === "/lru/get") out.value = await sweeper.get("a");
      if (url.pathname === "/lru/plan") out.evicts = (await sweeper.plan()).actions.map((a) => `${a.key}:${a.reason}`);
      if (url.searchParams.get("close") !== "no") ctx.waitUntil(sweeper.close());
      return Response.json(out);
    }
    if (url.pathname === "/scenario/kv-r2") {
      try {
        return await scenario(kvStore(env.R2_KV, { blobs: r2(env.BUCKET) }), async () => [
          ...(await kvNamesOf(env.R2_KV)),
          ...(await bucketNames(env.BUCKET)),
        ]);
      } catch (e) {
        return Response.json({ error: String(e?.stack ?? e) }, { status: 500 });
      }
    }
    if (url.pathname.startsWith("/do/")) {
      const stub = env.CLEANER.get(env.CLEANER.idFromName(url.searchParams.get("do") ?? "one"));
      return stub.fetch(request);
    }
    const count = { calls: 0 };
    const kv = url.searchParams.get("ns") === "cron" ? env.CRON_KV : env.KV;
    try {
      return await handle(url, kvStore(counted(kv, count)), count);
    } catch (e) {
      return Response.json({ error: String(e?.stack ?? e), calls: count.calls }, { status: 500 });
    }
  },
};

/**
 * A Durable Object keeping its own storage clean from its alarm. The test's
 * clock (`now`) is kept in its storage, beside kvsweep's keys, for the alarm.
 */
export class Cleaner {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
    this.storage = ctx.storage;
  }

  async fetch(request) {
    const url = new URL(request.url);
    url.pathname = url.pathname.slice(3);
    const count = { calls: 0 };
    try {
      if (url.searchParams.has("now")) await this.storage.put("test:now", Number(url.searchParams.get("now")));
      switch (url.pathname) {
        case "/arm":
          await scheduleCleanup(this.storage, 0);
          return Response.json({ alarm: await this.storage.getAlarm() });
        case "/state":
          return Response.json({ alarm: await this.storage.getAlarm(), slices: (await this.storage.get("test:slices")) ?? [] });
        case "/raw":
          return Response.json({ names: [...(await this.storage.list()).keys()] });
        case "/r2-orphans": {
          // Bytes without a record, as a crash between upload and record leaves them.
          const store = durableObjectStore(this.storage, { prefix: "orph/", blobs: r2(this.env.DO_BUCKET) });
          const sweeper = new Sweeper(store);
          const kept = await sweeper.putBlob(new Uint8Array([1, 2, 3]));
          await this.env.DO_BUCKET.put(`orph/b/\0${"ab".repeat(32)}`, new Uint8Array([9]));
          const young = await collectR2Orphans(store, { graceMs: 60_000 });
          await new Promise((r) => setTimeout(r, 30));
          const dry = await collectR2Orphans(store, { graceMs: 10, dryRun: true });
          const real = await collectR2Orphans(store, { graceMs: 10 });
          const after = await collectR2Orphans(store, { graceMs: 0, dryRun: true });
          return Response.json({ young, dry, real, after, kept: (await sweeper.getBlob(kept)) !== undefined });
        }
        case "/scenario":
          return await scenario(durableObjectStore(this.storage), async () => [...(await this.storage.list()).keys()]);
        case "/chunks":
          return Response.json({ names: [...(await this.storage.list({ prefix: "kvsweep-chunk/" })).keys()] });
        case "/big": {
          // A split value's chunks hold their own bytes, not the value's
          // whole buffer each; 5 MiB goes in and comes back.
          const sweeper = new Sweeper(durableObjectStore(this.storage, { prefix: "big/" }));
          const value = new Uint8Array(5 << 20).map((_, i) => i % 251);
          await sweeper.put("v", value);
          const back = await sweeper.get("v");
          const blob = await sweeper.putBlob(value.subarray(0, 300 * 1024));
          const stored = [...(await this.storage.list({ prefix: "big/kvsweep-chunk/" })).values()];
          const chunks = [...(await this.storage.list({ prefix: "kvsweep-chunk/big/" })).values()];
          return Response.json({
            same: back instanceof Uint8Array && back.length === value.length && back.every((b, i) => b === value[i]),
            blobBack: (await sweeper.getBlob(blob))?.length ?? null,
            chunks: [...stored, ...chunks].map((c) => [c.length, c.buffer.byteLength]),
          });
        }
        case "/concurrent": {
          // Twenty writes at once in one event, each referencing one entry:
          // the object's batches must not interleave (counts stay exact).
          const sweeper = new Sweeper(durableObjectStore(this.storage, { prefix: "conc/" }));
          await sweeper.put("child", "shared");
          await Promise.all(Array.from({ length: 20 }, (_, i) => sweeper.put(`p${i}`, i, { refs: ["child"] })));
          await Promise.all(Array.from({ length: 19 }, (_, i) => sweeper.delete(`p${i}`)));
          let refused = null;
          try {
            await sweeper.delete("child");
          } catch (e) {
            refused = e.message;
          }
          const rebuilt = await sweeper.rebuild();
          return Response.json({ refused, child: (await sweeper.get("child")) ?? null, rebuilt });
        }
        case "/scenario-r2":
          return await scenario(durableObjectStore(this.storage, { blobs: r2(this.env.DO_BUCKET) }), async () => [
            ...(await this.storage.list()).keys(),
            ...(await bucketNames(this.env.DO_BUCKET)),
          ]);
        default:
          return await handle(url, durableObjectStore(this.storage), count);
      }
    } catch (e) {
      return Response.json({ error: String(e?.stack ?? e) }, { status: 500 });
    }
  }

  async alarm() {
    const now = await this.storage.get("test:now");
    const sweeper = new Sweeper(durableObjectStore(this.storage), { clock: () => now, policy, batchSize });
    const report = await runFromAlarm(sweeper, this.storage, { maxOps: 30, periodMs: 3_600_000 });
    const slices = (await this.storage.get("test:slices")) ?? [];
    slices.push({ done: report.done, stopped: report.stopped ?? null, ops: report.ops, deleted: report.deleted });
    await this.storage.put("test:slices", slices);
  }
}
