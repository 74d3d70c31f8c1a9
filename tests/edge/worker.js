// A Cloudflare Worker that keeps its KV namespace clean with kvsweep, run by
// tests/edge/workers.test.mjs in real workerd (miniflare). Every request
// counts its own KV calls, to show that none passes the per-request limit.
import { Sweeper, kvStore, durableObjectStore, runFromAlarm, scheduleCleanup } from "../../pkg/workerd.js";

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

  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/do/")) {
      const stub = env.CLEANER.get(env.CLEANER.idFromName("one"));
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
  constructor(ctx) {
    this.ctx = ctx;
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
