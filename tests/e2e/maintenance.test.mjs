// The maintenance operations (issue #12) on a real IndexedDB in Chromium: a
// blob's bytes damaged in the database directly, found by verify and removed
// by repair; history, detail, resolvePrefix, prune, zombies, deleteNamespace,
// health, migrate and moveTo on the same kind of store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowser } from "../shared/chromium.mjs";

const env = withBrowser();

test("verify finds a blob damaged in IndexedDB; the other operations work on the same database", { timeout: 90_000 }, async () => {
  const page = await (await env.browser.newContext()).newPage();
  await page.goto(env.server.url);
  const out = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    const name = `maintenance-${Date.now()}`;
    const store = await kv.openIndexedDb(name);
    let now = 1_700_000_000_000;
    const s = new kv.Sweeper(store, { clock: () => now, schedule: { periodMs: 3_600_000 } });
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const id = await s.putBlob(new Uint8Array(5000).fill(i + 1));
      await s.put(`note-${i}`, { title: `n${i}` }, { namespace: "notes", blobs: [id] });
      ids.push(id);
    }
    now += 1000;
    await s.put("note-10", { title: "late" }, { namespace: "notes" });
    const clean = await s.verify();

    // The database itself, a transaction at a time, beside the store's own connection.
    const inDb = async (table, mode, body) => {
      const db = await new Promise((ok, ko) => {
        const r = indexedDB.open(name);
        r.onsuccess = () => ok(r.result);
        r.onerror = () => ko(r.error);
      });
      const tx = db.transaction(table, mode);
      const result = await body(tx.objectStore(table));
      await new Promise((ok, ko) => {
        tx.oncomplete = ok;
        tx.onerror = () => ko(tx.error);
      });
      db.close();
      return result;
    };
    const read = (os, key) => new Promise((ok) => (os.get(key).onsuccess = (e) => ok(e.target.result)));
    // Damage one byte of the first blob.
    const key = ["", ids[0]];
    const damaged = new Uint8Array(await inDb("blobs", "readonly", (os) => read(os, key)));
    damaged[4321] ^= 0xff;
    await inDb("blobs", "readwrite", (os) => os.put(damaged, key));

    const found = await s.verify();
    const repaired = await s.verify({ repair: true });
    const after = await s.verify();
    const history = (await s.history({ namespace: "notes", limit: 2 })).map((e) => e.key);
    const prefix = [await s.resolvePrefix("note-1", { namespace: "notes" }), await s.resolvePrefix("note-", { namespace: "notes" })];
    now += 10 * 86_400_000;
    await s.put("note-new", 1, { namespace: "notes" });
    const pruned = await s.prune({ olderThanMs: 86_400_000 });
    const left = [];
    for await (const k of s.keys({ namespace: "notes" })) left.push(k);
    await s.run();
    const health = await s.health();
    // migrate: the entry's record rewritten as a release from before
    // accessedAt wrote it (the field dropped, the map one field shorter).
    const metaKey = ["notes", "note-new"];
    await inDb("meta", "readwrite", async (os) => {
      const record = new Uint8Array(await read(os, metaKey));
      const field = [0xaa, ...new TextEncoder().encode("accessedAt")];
      let at = -1;
      for (let i = 0; at < 0 && i < record.length; i++) if (field.every((b, j) => record[i + j] === b)) at = i;
      const m = record[at + field.length];
      const len = m < 0x80 ? 1 : 1 + { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8 }[m];
      const old = Uint8Array.of(...record.slice(0, at), ...record.slice(at + field.length + len));
      old[2] -= 1;
      os.put(old, metaKey);
    });
    const migrated = await s.migrate();
    const again = await s.migrate();
    const value = await s.get("note-new", { namespace: "notes" });
    const backlog = await s.health({ maxBacklog: 0 });
    const detail = await s.detail("note-new", { namespace: "notes" });
    await s.put("draft", { text: "d" }, { namespace: "drafts" });
    const zombies = await s.zombies();
    const dropped = await s.deleteNamespace("drafts");
    const drafts = await s.history({ limit: 10 });
    s.close();
    return { ids, clean, found, repaired, after, history, prefix, pruned, left, health, migrated, again, value, backlog, detail, zombies, dropped, drafts: drafts.map((e) => e.key) };
  });
  const { ids, clean, found, repaired, after } = out;
  assert.deepEqual([clean.checked, clean.bytes, clean.corrupt, clean.missing], [3, 15000, [], []]);
  assert.deepEqual(found.corrupt, [ids[0]]);
  assert.deepEqual(found.referrers, [{ namespace: "notes", key: "note-0", blob: ids[0] }]);
  assert.deepEqual(repaired.removed, [ids[0]]);
  assert.deepEqual(after.corrupt, []);
  assert.deepEqual(after.missing, [ids[0]]);
  assert.deepEqual(out.history, ["note-10", "note-0"]);
  assert.deepEqual(out.prefix, [{ key: "note-1" }, { ambiguous: ["note-0", "note-1", "note-10", "note-2"] }]);
  assert.equal(out.pruned.deleted.maxAge.count, 4);
  assert.deepEqual(out.left, ["note-new"]);
  assert.equal(out.health.status, "healthy", JSON.stringify(out.health));
  assert.equal(out.health.runs.length, 1);
  assert.deepEqual([out.migrated.scanned, out.migrated.upgraded, out.migrated.unreadable], [1, 1, []], JSON.stringify(out.migrated));
  assert.deepEqual([out.again.current, out.again.upgraded], [1, 0]);
  assert.equal(out.value, 1);
  assert.equal(out.backlog.status, "healthy", JSON.stringify(out.backlog));
  assert.deepEqual([out.detail.key, out.detail.namespace, out.detail.value], ["note-new", "notes", 1]);
  assert.deepEqual(out.zombies, []);
  assert.equal(out.dropped.deleted.cleared.count, 1);
  assert.deepEqual(out.drafts, ["note-new"]);
});

test("moveTo moves an IndexedDB store to OPFS in Chromium, blobs as files", { timeout: 90_000 }, async () => {
  const page = await (await env.browser.newContext()).newPage();
  await page.goto(env.server.url);
  const out = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    const name = `move-${Date.now()}`;
    const s = new kv.Sweeper(await kv.openIndexedDb(name));
    const ids = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await s.putBlob(new Uint8Array(100_000).fill(i)));
      await s.put(`photo-${i}`, { caption: `c${i}` }, { namespace: "album", blobs: [ids[i]] });
    }
    const files = await kv.openOpfs(name);
    const report = await s.moveTo(files);
    const left = await s.history();
    s.close();
    const t = new kv.Sweeper(files);
    const captions = [];
    for await (const [key, value] of t.entries({ namespace: "album" })) captions.push(`${key}=${value.caption}`);
    const blob = await t.getBlob(ids[3]);
    const check = await t.verify();
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
    const onDisk = [];
    for await (const [file] of dir.entries()) onDisk.push(file);
    t.close();
    return { ids, report, left: left.length, captions, blob: [blob.length, blob[0], blob[99_999]], check, onDisk: onDisk.sort() };
  });
  const { report } = out;
  assert.deepEqual(
    [report.entries, report.blobs, report.blobBytes, report.verified, report.left, report.cleared],
    [5, 5, 500_000, true, 0, 11],
    JSON.stringify(report),
  );
  assert.equal(out.left, 0);
  assert.deepEqual(out.captions, [0, 1, 2, 3, 4].map((i) => `photo-${i}=c${i}`));
  assert.deepEqual(out.blob, [100_000, 3, 3]);
  assert.deepEqual([out.check.checked, out.check.corrupt, out.check.missing], [5, [], []]);
  assert.deepEqual(out.onDisk, [...out.ids].sort());
});

test("verify finds an OPFS file whose bytes no longer match their SHA-256, repair removes it, and putBlob writes it again (issue #11)", { timeout: 90_000 }, async () => {
  const page = await (await env.browser.newContext()).newPage();
  await page.goto(env.server.url);
  const out = await page.evaluate(async () => {
    const kv = await import("/pkg/index.js");
    const name = `verify-opfs-${Date.now()}`;
    const store = await kv.openOpfs(name);
    const s = new kv.Sweeper(store);
    const good = await s.putBlob(new Uint8Array(4096).fill(1));
    // Past 256 KiB: putBlob does not write it on a guess of it new.
    const bad = await s.putBlob(new Uint8Array(300 * 1024).fill(2));
    await s.put("a", 1, { blobs: [good, bad] });
    const before = await s.verify();
    // Overwrite one byte of the file in the origin private file system.
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
    const writable = await (await dir.getFileHandle(bad)).createWritable({ keepExistingData: true });
    await writable.write({ type: "write", position: 100, data: new Uint8Array([0]) });
    await writable.close();
    const found = await s.verify();
    const repaired = await s.verify({ repair: true });
    const files = [];
    for await (const [file] of dir.entries()) files.push(file);
    // Its record and count stayed: putBlob of the right bytes writes the file again.
    const restored = await s.putBlob(new Uint8Array(300 * 1024).fill(2));
    const after = await s.verify();
    const filesAfter = [];
    for await (const [file] of dir.entries()) filesAfter.push(file);
    const rebuilt = await s.rebuild();
    s.close();
    return { good, bad, before, found, repaired, files, restored, after, filesAfter: filesAfter.sort(), fixed: rebuilt.blobsFixed };
  });
  assert.deepEqual([out.before.checked, out.before.corrupt], [2, []]);
  assert.deepEqual(out.found.corrupt, [out.bad]);
  assert.deepEqual(out.found.referrers, [{ namespace: "", key: "a", blob: out.bad }]);
  assert.deepEqual(out.repaired.removed, [out.bad]);
  assert.deepEqual(out.files, [out.good]);
  assert.equal(out.restored, out.bad);
  assert.deepEqual([out.after.checked, out.after.corrupt, out.after.missing], [2, [], []]);
  assert.deepEqual(out.filesAfter, [out.good, out.bad].sort());
  assert.equal(out.fixed, 0);
});
