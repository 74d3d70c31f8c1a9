// OPFS stores (issue #11) in headless Chromium: the key–value scenario (TTLs,
// references, shared blobs, a large blob) on the main thread and in a
// dedicated worker, checked against the raw IndexedDB records and files;
// crashes (the renderer killed) while blobs are written and while a run
// deletes them; files a crash left unrecorded; bad arguments.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowser, crashPage, stallAfter } from "../shared/chromium.mjs";
import { checkScenario } from "../shared/kv-scenario.mjs";

const env = withBrowser();

async function newPage(context) {
  const page = await context.newPage();
  await page.goto(env.server.url);
  return page;
}

/** `fn` run in a fresh page of its own (a context closed after, whatever happens). */
async function inPage(fn) {
  await env.ready;
  const context = await env.browser.newContext();
  try {
    return await (await newPage(context)).evaluate(fn);
  } finally {
    await context.close();
  }
}

/** Runs the module `url` in a dedicated worker named `name` of `page`: what it posts, its error checked. */
async function inWorker(page, url, name) {
  const got = await page.evaluate(
    ([url, name]) =>
      new Promise((resolve) => {
        const worker = new Worker(url, { type: "module", name });
        worker.onmessage = ({ data }) => resolve(data);
        worker.onerror = (e) => resolve({ error: e.message });
      }),
    [url, name],
  );
  assert.equal(got.error, undefined, got.error);
  return got;
}

test("the key–value scenario on an OPFS store, on the main thread", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const { kvScenario } = await import("/tests/shared/kv-scenario.mjs");
    const { opfsNames } = await import("/tests/shared/store-names.js");
    await kv.deleteOpfs("scenario");
    const store = await kv.openOpfs("scenario");
    const { sweeper, ...out } = await kvScenario(kv, store, () => opfsNames("scenario"));
    out.kind = store.kind;
    sweeper.close();
    store.close();
    await kv.deleteOpfs("scenario");
    return out;
  });
  assert.equal(out.kind, "opfs");
  checkScenario(out, assert);
});

test("the key–value scenario on an OPFS store, in a dedicated worker (sync access handles)", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const got = await inWorker(await newPage(context), "/tests/shared/opfs-worker.js", "worker-scenario");
  assert.equal(got.sync, true, "the worker has sync access handles");
  checkScenario(got.out, assert);
  await context.close();
});

test("in a dedicated worker a new blob's file is a part file moved into place, never over a file there whole", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  const got = await inWorker(await newPage(context), "/tests/shared/opfs-worker-files.js", "worker-files");
  const { out } = got;
  // A new blob: its part file and the lookup of its own name, no truncate, one move.
  for (const k of ["fresh0", "fresh1", "fresh2"]) assert.deepEqual(out.calls[k], { getFileHandle: 2, truncate: 0, move: 1 }, k);
  // A leftover whole is kept; one cut short is removed, then the part moved in.
  assert.equal(out.calls.whole.move, 0);
  assert.equal(out.calls.cut.move, 1);
  // A live file put again by a store that guessed it new is not moved over.
  assert.equal(out.calls.live.move, 0);
  assert.equal(out.liveSameId, true);
  // Where move() refuses to replace a file, no write asked it to.
  assert.equal(out.refused, 0);
  assert.equal(out.calls.bigWhole.move, 0);
  assert.equal(out.calls.bigCut.move, 1);
  // Each blob reads back exactly, and no part file is left.
  assert.ok(Object.values(out.read).every(Boolean), JSON.stringify(out.read));
  assert.deepEqual(out.files, out.ids);
  await context.close();
});

test("on the main thread a blob's swap file never replaces a file there whole", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const { opfsFiles } = await import("/tests/shared/store-names.js");
    const hex = async (b) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))].map((x) => x.toString(16).padStart(2, "0")).join("");
    const bytesOf = (seed) => Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7 + seed) & 255);
    // How each write of a swap file ended: replacing the file, or thrown away.
    const ended = { close: 0, abort: 0 };
    const proto = FileSystemWritableFileStream.prototype;
    const { close, abort } = proto;
    proto.close = function (...a) {
      ended.close++;
      return close.apply(this, a);
    };
    proto.abort = function (...a) {
      ended.abort++;
      return abort.apply(this, a);
    };
    const counted = async (fn) => {
      ended.close = ended.abort = 0;
      await fn();
      return { ...ended };
    };
    await kv.deleteOpfs("swap");
    const store = await kv.openOpfs("swap");
    const sweeper = new kv.Sweeper(store);
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("kvsweep-swap");
    const leave = async (blob, bytes) => {
      const w = await (await dir.getFileHandle(await hex(blob), { create: true })).createWritable();
      await w.write(bytes);
      await close.call(w);
    };
    const res = {};
    const fresh = bytesOf(1);
    res.fresh = await counted(() => sweeper.putBlob(fresh));
    // The live file put again by another store that guesses it new.
    const other = await kv.openOpfs("swap");
    const second = new kv.Sweeper(other);
    res.live = await counted(() => second.putBlob(fresh));
    second.close();
    other.close();
    // Leftovers no record claims: whole (kept), cut short (replaced).
    const whole = bytesOf(2);
    const cut = bytesOf(3);
    await leave(whole, whole);
    await leave(cut, cut.subarray(0, 100));
    res.whole = await counted(() => sweeper.putBlob(whole));
    res.cut = await counted(() => sweeper.putBlob(cut));
    res.read = [];
    for (const b of [fresh, whole, cut]) {
      const got = await sweeper.getBlob(await hex(b));
      res.read.push(got?.length === b.length && got.every((x, i) => x === b[i]));
    }
    res.files = await opfsFiles("swap");
    res.ids = (await Promise.all([fresh, whole, cut].map(hex))).sort();
    sweeper.close();
    store.close();
    await kv.deleteOpfs("swap");
    return res;
  });
  assert.deepEqual(out.fresh, { close: 1, abort: 0 });
  assert.deepEqual(out.live, { close: 0, abort: 1 });
  assert.deepEqual(out.whole, { close: 0, abort: 1 });
  assert.deepEqual(out.cut, { close: 1, abort: 0 });
  assert.deepEqual(out.read, [true, true, true]);
  assert.deepEqual(out.files, out.ids);
});

/** In the page: `n` blobs of `size` bytes, each its own, all different. */
const blobsOf = (n, size, seed) =>
  Array.from({ length: n }, (_, i) => {
    const b = new Uint8Array(size);
    for (let j = 0; j < size; j += 997) b[j] = (i * 31 + j + seed) & 255;
    b[0] = i & 255;
    b[1] = i >> 8;
    b[2] = seed;
    return b;
  });

test("a crash while blobs are written leaves no file unrecorded after the next openOpfs, and every recorded blob intact", { timeout: 90_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  let page = await newPage(context);
  // The fourth file's write never finishes: the crash finds it begun.
  await stallAfter(page, "FileSystemWritableFileStream", "close", 3);
  await page.evaluate(async (src) => {
    const kv = await import("/pkg/index.js");
    await kv.deleteOpfs("crash-write");
    const store = await kv.openOpfs("crash-write");
    const sweeper = new kv.Sweeper(store);
    window.written = 0;
    // 1 MB blobs, one after another, until the crash.
    const blobs = new Function(`return (${src})`)()(400, 1 << 20, 7);
    (async () => {
      for (const b of blobs) {
        await sweeper.putBlob(b);
        window.written++;
      }
    })().catch(() => {});
  }, blobsOf.toString());
  // Three blobs recorded, and the fourth's file begun (its close never returns).
  await page.waitForFunction(() => window.written >= 3);
  for (let n = 0; n < 4; ) {
    n = await page.evaluate(async () => (await (await import("/tests/shared/store-names.js")).opfsFiles("crash-write")).length);
    if (n < 4) await new Promise((r) => setTimeout(r, 20));
  }
  await crashPage(context, page);

  page = await newPage(context);
  const after = await page.evaluate(async (src) => {
    const kv = await import("/pkg/index.js");
    const { opfsFiles, opfsNames } = await import("/tests/shared/store-names.js");
    const before = await opfsFiles("crash-write");
    const store = await kv.openOpfs("crash-write");
    const files = await opfsFiles("crash-write");
    const sweeper = new kv.Sweeper(store);
    // The blob records, read from the database directly.
    const recorded = (await opfsNames("crash-write")).filter((n) => n.startsWith("kvsweep/c/\0")).map((n) => n.slice(11)).sort();
    // Each recorded blob reads back as the bytes put (its id is their SHA-256).
    let intact = 0;
    for (const id of recorded) {
      const bytes = await sweeper.getBlob(id);
      const hex = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((x) => x.toString(16).padStart(2, "0")).join("");
      if (hex === id) intact++;
    }
    const all = new Function(`return (${src})`)()(400, 1 << 20, 7);
    sweeper.close();
    store.close();
    await kv.deleteOpfs("crash-write");
    return { before, files, recorded, intact, total: all.length };
  }, blobsOf.toString());
  assert.equal(after.recorded.length, 3, "three blobs were recorded before the crash");
  assert.ok(after.before.length > after.recorded.length, `the crash left a file no record claims (${after.before.join(", ")})`);
  assert.deepEqual(after.files, after.recorded, "after openOpfs, the files are exactly the recorded blobs");
  assert.equal(after.intact, after.recorded.length, "every recorded blob reads back intact");
  await context.close();
});

// With `stall`, file removals after the first `stall` never return: the
// crash then finds batches committed whose files are still there.
for (const stall of [0, 10]) {
test(`a crash while a run deletes blobs${stall ? " (files of committed batches not yet removed)" : ""} loses no live entry's blob, and the next open and run finish the job`, { timeout: 90_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  let page = await newPage(context);
  const setUp = async ([src, fill]) => {
    const kv = await import("/pkg/index.js");
    if (fill) await kv.deleteOpfs("crash-run");
    const store = await kv.openOpfs("crash-run");
    let now = fill ? 1_000_000 : 1_000_000 + 10 * 60_000;
    const sweeper = new kv.Sweeper(store, { clock: () => now, batchSize: 5, policy: { orphanGraceMs: 0 } });
    const blobs = new Function(`return (${src})`)()(120, 30_000, 3);
    if (fill) {
      const ids = [];
      for (const b of blobs) ids.push(await sweeper.putBlob(b));
      // Even entries expire; odd ones stay. Entries 0 and 1 share blob 0.
      for (let i = 0; i < ids.length; i++) {
        await sweeper.put(`e${i}`, i, { blobs: i === 1 ? [ids[0], ids[1]] : [ids[i]], ...(i % 2 === 0 ? { ttlMs: 1_000 } : {}) });
      }
      now += 60_000;
    }
    window.state = { kv, store, sweeper, blobs };
  };
  await page.evaluate(setUp, [blobsOf.toString(), true]);
  if (stall) await stallAfter(page, "FileSystemDirectoryHandle", "removeEntry", stall);
  await page.evaluate(() => {
    window.progress = [];
    window.state.sweeper.run({ onProgress: (p) => (window.progress.push(p.deleted), new Promise((r) => setTimeout(r, 20))) }).catch(() => {});
  });
  const counts = () =>
    page.evaluate(async () => {
      const { opfsNames } = await import("/tests/shared/store-names.js");
      const names = await opfsNames("crash-run");
      const count = (t) => names.filter((x) => x.startsWith(`kvsweep/${t}/`)).length;
      return { records: count("c"), files: count("b") };
    });
  if (stall) {
    // Stalled inside a batch: its blob records are deleted, its files not.
    for (let c = await counts(); !(c.records < 120 - stall && c.files > c.records); c = await counts()) {
      await new Promise((r) => setTimeout(r, 50));
    }
  } else await page.waitForFunction(() => window.progress.at(-1) >= 30);
  await crashPage(context, page);

  page = await newPage(context);
  const left = await counts();
  if (stall) assert.ok(left.files > left.records, `the crash left files of deleted blob records (${left.files} files, ${left.records} records)`);
  await page.evaluate(setUp, [blobsOf.toString(), false]);
  const out = await page.evaluate(async () => {
    const { sweeper, blobs } = window.state;
    const { opfsFiles } = await import("/tests/shared/store-names.js");
    const hex = async (b) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))].map((x) => x.toString(16).padStart(2, "0")).join("");
    const ids = await Promise.all(blobs.map(hex));
    // Live before the next run: every odd entry's blob, and blob 0 (entry 1 holds it).
    const live = [0, ...ids.keys()].filter((i) => i === 0 || i % 2 === 1);
    const liveBefore = [];
    for (const i of live) {
      const b = await sweeper.getBlob(ids[i]);
      liveBefore.push(b !== undefined && (await hex(b)) === ids[i]);
    }
    const report = await sweeper.run();
    const files = await opfsFiles("crash-run");
    const entries = [];
    for await (const k of sweeper.keys()) entries.push(k);
    const expectFiles = [...new Set(live.map((i) => ids[i]))].sort();
    sweeper.close();
    window.state.store.close();
    await window.state.kv.deleteOpfs("crash-run");
    return { liveBefore, done: report.done, errors: report.errors.length, files, expectFiles, entries: entries.sort() };
  });
  assert.ok(out.liveBefore.every(Boolean), "every live blob survived the crash intact");
  assert.deepEqual([out.done, out.errors], [true, 0]);
  assert.deepEqual(out.files, out.expectFiles, "the files left are exactly the live blobs");
  assert.deepEqual(out.entries, Array.from({ length: 60 }, (_, i) => `e${2 * i + 1}`).sort());
  await context.close();
});
}

test("openOpfs, and runs while the store is open, remove files that no record claims and parts of cut-short writes", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const { opfsFiles } = await import("/tests/shared/store-names.js");
    await kv.deleteOpfs("unclaimed");
    let store = await kv.openOpfs("unclaimed");
    let sweeper = new kv.Sweeper(store);
    const kept = await sweeper.putBlob(new Uint8Array([1, 2, 3]));
    sweeper.close();
    store.close();
    // What a crash leaves: a whole file with no record, and part of a write.
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("kvsweep-unclaimed");
    for (const name of ["a".repeat(64), `${"b".repeat(64)}.part-xyz`]) {
      const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
      await w.write(new Uint8Array([9]));
      await w.close();
    }
    const before = await opfsFiles("unclaimed");
    store = await kv.openOpfs("unclaimed");
    const after = await opfsFiles("unclaimed");
    sweeper = new kv.Sweeper(store);
    const bytes = [...(await sweeper.getBlob(kept))];
    // Left while the store stays open here (a crashed tab or worker): the
    // next run's listing removes them, not only the next openOpfs.
    for (const name of ["c".repeat(64), `${kept}.part-abc`]) {
      const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
      await w.write(new Uint8Array([9]));
      await w.close();
    }
    const whileOpen = await opfsFiles("unclaimed");
    const report = await sweeper.run();
    const afterRun = await opfsFiles("unclaimed");
    const still = [...(await sweeper.getBlob(kept))];
    sweeper.close();
    store.close();
    await kv.deleteOpfs("unclaimed");
    return { kept, before, after, bytes, whileOpen, afterRun, still, errors: report.errors.length };
  });
  assert.equal(out.before.length, 3);
  assert.deepEqual(out.after, [out.kept]);
  assert.deepEqual(out.bytes, [1, 2, 3]);
  assert.equal(out.whileOpen.length, 3);
  assert.deepEqual(out.afterRun, [out.kept]);
  assert.deepEqual([out.still, out.errors], [[1, 2, 3], 0]);
});

test("openOpfs and deleteOpfs refuse bad arguments with clear errors", { timeout: 30_000 }, async () => {
  const messages = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const out = [];
    for (const f of [() => kv.openOpfs(""), () => kv.openOpfs("a/b"), () => kv.openOpfs(42), () => kv.openOpfs("x", { sync: true }), () => kv.deleteOpfs(undefined)]) {
      try {
        await f();
        out.push("no error");
      } catch (e) {
        out.push(`${e.name}: ${e.message}`);
      }
    }
    return out;
  });
  assert.match(messages[0], /^TypeError: kvsweep: openOpfs\(name\): name must be a non-empty string, got ""/);
  assert.match(messages[1], /openOpfs\(name\): name must be at most 200 characters, without \/ \\ or U\+0000/);
  assert.match(messages[2], /got 42/);
  assert.match(messages[3], /openOpfs\(name, options\): openOpfs takes no options yet/);
  assert.match(messages[4], /^TypeError: kvsweep: deleteOpfs\(name\): name must be a non-empty string, got undefined/);
});

test("an OPFS store deleted from another tab says so, as openIndexedDb's does; one closed here says that", { timeout: 60_000 }, async () => {
  await env.ready;
  const context = await env.browser.newContext();
  try {
    const a = await newPage(context);
    const b = await newPage(context);
    await a.evaluate(async () => {
      const kv = await import("/pkg/index.js");
      window.sweeper = new kv.Sweeper(await kv.openOpfs("elsewhere"), { schedule: { debounceMs: 10, retryMs: 20, retryMaxMs: 40, periodMs: 0 } });
      window.blob = await window.sweeper.putBlob(new Uint8Array([1]));
    });
    await b.evaluate(async () => (await import("/pkg/index.js")).deleteOpfs("elsewhere"));
    const messages = await a.evaluate(async () => {
      const kv = await import("/pkg/index.js");
      const out = [];
      for (const call of [() => window.sweeper.putBlob(new Uint8Array([2])), () => window.sweeper.run()]) out.push(await call().then(() => "ok", (e) => e.message));
      const store = await kv.openOpfs("here");
      const mine = new kv.Sweeper(store, { schedule: { debounceMs: 10, retryMs: 20, retryMaxMs: 40, periodMs: 0 } });
      const id = await mine.putBlob(new Uint8Array([3]));
      store.close();
      out.push(await mine.put("k", 1).then(() => "ok", (e) => e.message));
      // A blob's file outlives the connection: read, it was "missing" (found by a tester).
      const blobs = [await window.sweeper.getBlob(window.blob).then(() => "read", (e) => e.message), await mine.getBlob(id).then(() => "read", (e) => e.message)];
      // Background runs on a store closed for good stop after one fails,
      // not retried every retryMaxMs for ever.
      for (const s of [window.sweeper, mine]) {
        s.request("full");
        for (let i = 0; i < 100 && s.stats().state !== "closed"; i++) await new Promise((r) => setTimeout(r, 30));
        await new Promise((r) => setTimeout(r, 200));
        out.push(`${s.stats().state} after ${s.stats().failures}`);
      }
      await kv.deleteOpfs("here");
      return [...out, ...blobs];
    });
    assert.deepEqual(messages.slice(3, 5), ["closed after 1", "closed after 1"]);
    assert.match(messages[5], /^kvsweep: getBlob: store is closed: another tab or worker deleted the database kvsweep-opfs:elsewhere/);
    assert.match(messages[6], /^kvsweep: getBlob: store is closed: the store was closed \(store\.close\(\)\)$/);
    assert.match(messages[0], /^kvsweep: putBlob: store is closed: another tab or worker deleted the database kvsweep-opfs:elsewhere or upgraded it, and this connection closed to let it; open the store again for a new Sweeper$/);
    assert.match(messages[1], /run: .*another tab or worker deleted the database kvsweep-opfs:elsewhere/);
    assert.match(messages[2], /^kvsweep: put: store is closed: the store was closed \(store\.close\(\)\)$/);
  } finally {
    await context.close();
  }
});

test("listings page over whole pages and past them: every entry counted, whatever the last page holds", { timeout: 90_000 }, async () => {
  // The records driver (idbkv.js) reads pages of 1,001 to know whether more
  // follow, and the next page ahead: a page boundary off by one would drop
  // or repeat entries (an inclusive bound repeats one per page).
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const got = [];
    for (const n of [999, 1000, 2000, 2001]) {
      const name = `pages-${n}`;
      await kv.deleteOpfs(name);
      const store = await kv.openOpfs(name);
      const s = new kv.Sweeper(store, { policy: { maxEntries: n - 3 } });
      for (let i = 0; i < n; i += 500) {
        await s.putMany(Array.from({ length: Math.min(500, n - i) }, (_, j) => ({ key: `k${String(i + j).padStart(5, "0")}`, value: i + j })));
      }
      const keys = [];
      for await (const k of s.keys()) keys.push(k);
      const plan = await s.plan();
      s.close();
      store.close();
      await kv.deleteOpfs(name);
      got.push({ n, keys: keys.length, distinct: new Set(keys).size, actions: plan.actions.length, scanned: plan.summary.scanned });
    }
    return got;
  });
  for (const r of out) assert.deepEqual([r.keys, r.distinct, r.actions], [r.n, r.n, 3], JSON.stringify(r));
});

test("getBlob refuses bytes changed outside kvsweep (a file cut short, appended to, overwritten), and verify with repair then putBlob restores them", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const name = "tampered";
    const store = await kv.openOpfs(name);
    const sweeper = new kv.Sweeper(store);
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
    const id = await sweeper.putBlob(bytes);
    await sweeper.put("doc", 1, { blobs: [id] });
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
    const rewrite = async (content) => {
      const w = await (await dir.getFileHandle(id)).createWritable();
      await w.write(content);
      await w.close();
    };
    const flipped = bytes.slice();
    flipped[1234] ^= 1;
    const got = {};
    for (const [label, content] of [["cut", bytes.slice(0, 1000)], ["appended", new Uint8Array([...bytes, 1, 2, 3])], ["flipped", flipped]]) {
      await rewrite(content);
      got[label] = await sweeper.getBlob(id).then((b) => `returned ${b.length} bytes`, (e) => e.message);
    }
    const report = await sweeper.verify({ repair: true });
    await sweeper.putBlob(bytes);
    const back = await sweeper.getBlob(id);
    got.restored = back.length === bytes.length && back.every((b, i) => b === bytes[i]);
    got.corrupt = report.corrupt.length;
    sweeper.close();
    store.close();
    await kv.deleteOpfs(name);
    return { id, got };
  });
  const refused = (n) => `kvsweep: getBlob: the ${n} bytes read for blob ${out.id} are not the ones its id names (their SHA-256 is `;
  assert.ok(out.got.cut.startsWith(refused(1000)), out.got.cut);
  assert.ok(out.got.appended.startsWith(refused(300_003)), out.got.appended);
  assert.ok(out.got.flipped.startsWith(refused(300_000)), out.got.flipped);
  assert.match(out.got.flipped, /they were changed outside kvsweep; verify\(\{ repair: true \}\) removes them/);
  assert.deepEqual([out.got.corrupt, out.got.restored], [1, true]);
});

test("moveTo from an OPFS store whose blob file was removed outside kvsweep copies the record and names the blob missing", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const name = "move-missing";
    const store = await kv.openOpfs(name);
    const sweeper = new kv.Sweeper(store);
    const id = await sweeper.putBlob(new Uint8Array(1000).fill(3));
    const kept = await sweeper.putBlob(new Uint8Array(500).fill(4));
    await sweeper.put("doc", 1, { blobs: [id, kept] });
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
    await dir.removeEntry(id);
    const target = kv.memoryStore();
    const report = await sweeper.moveTo(target);
    const moved = new kv.Sweeper(target);
    const after = await moved.verify();
    sweeper.close();
    moved.close();
    store.close();
    await kv.deleteOpfs(name);
    return { id, report, missing: after.missing };
  });
  assert.deepEqual(out.report.missingBlobs, [out.id], JSON.stringify(out.report));
  assert.equal(out.report.blobs, 1);
  assert.deepEqual(out.missing, [out.id]);
});

test("a run whose blob file cannot be removed yet (held by another worker) counts the blob deleted, reports no error, and the next openOpfs removes the file", { timeout: 60_000 }, async () => {
  const out = await inPage(async () => {
    const kv = await import("/pkg/index.js");
    const { opfsFiles } = await import("/tests/shared/store-names.js");
    const name = "held-file";
    let now = 1_000_000;
    let store = await kv.openOpfs(name);
    const sweeper = new kv.Sweeper(store, { clock: () => now, policy: { orphanGraceMs: 0 } });
    const id = await sweeper.putBlob(new Uint8Array(2000).fill(5));
    await sweeper.put("gone", 1, { blobs: [id], ttlMs: 1000 });
    now += 60_000;
    // What a sync access handle open in another worker does to removeEntry.
    const removeEntry = FileSystemDirectoryHandle.prototype.removeEntry;
    FileSystemDirectoryHandle.prototype.removeEntry = function (file, ...rest) {
      if (file === id) return Promise.reject(new DOMException("held", "NoModificationAllowedError"));
      return removeEntry.call(this, file, ...rest);
    };
    let report;
    try {
      report = await sweeper.run();
    } finally {
      FileSystemDirectoryHandle.prototype.removeEntry = removeEntry;
    }
    const held = await opfsFiles(name);
    sweeper.close();
    store.close();
    store = await kv.openOpfs(name);
    const after = await opfsFiles(name);
    store.close();
    await kv.deleteOpfs(name);
    const deleted = Object.values(report.deleted).reduce((n, t) => n + t.count, 0);
    return { id, deleted, errors: report.errors, done: report.done, held, after };
  });
  assert.deepEqual(out.errors, []);
  assert.equal(out.done, true);
  assert.equal(out.deleted, 2, "the entry and its blob");
  assert.deepEqual(out.held, [out.id], "the file stayed while held");
  assert.deepEqual(out.after, [], "the next openOpfs removed it");
});
