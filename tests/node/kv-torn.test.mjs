// unstorage's fs driver writes a file in place: a process killed in the
// middle leaves it torn (empty, or cut short). kvStore keeps the records it
// rewrites in place (entry metadata, refreshed by reads and counted by
// referrers; blob records and blob temps; namespaces; run state) framed and twice, so that a
// torn one reads as its copy; and it tells its names' format by the names
// themselves when its marker is gone or torn.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStorage } from "unstorage";
import fsDriver from "unstorage/drivers/fs";
import { Sweeper, kvStore } from "../../pkg/node.js";

const keyOf = async (storage, name) => (await storage.getKeys()).find((k) => decodeURIComponent(k) === name);

/** Cuts a record short as a killed write leaves it: empty, or its first bytes. */
async function tear(storage, key, keep) {
  const bytes = new Uint8Array(await storage.getItemRaw(key));
  await storage.setItemRaw(key, bytes.slice(0, keep));
}

test("on unstorage's fs driver, an entry record or a blob record torn by a crash reads as its copy: nothing read, referenced or counted is lost", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  const blob = await s.putBlob(new TextEncoder().encode("attachment"));
  await s.put("Doc", { title: "kept" }, { blobs: [blob] });
  await s.put("note", "n", { refs: ["Doc"] });
  s.close();
  for (const keep of [0, 3, 12]) {
    // A crash in the middle of rewriting each (a read's refresh, a referrer's count).
    await tear(storage, await keyOf(storage, "kvsweep/m/\0Doc"), keep);
    await tear(storage, await keyOf(storage, `kvsweep/c/\0${blob}`), keep);
    const again = new Sweeper(kvStore(storage)); // the next process
    assert.deepEqual(await again.get("Doc"), { title: "kept" }, `kept ${keep}`);
    await assert.rejects(again.delete("Doc"), /referenced by 1 other entry/);
    assert.deepEqual(await again.getBlob(blob), new TextEncoder().encode("attachment"));
    await again.putBlob(new TextEncoder().encode("attachment"));
    await again.put("other", 1, { blobs: [blob] });
    const report = await again.run({ mode: "full" });
    assert.deepEqual(report.corrupt, [], `kept ${keep}`);
    assert.deepEqual(report.deleted, {}, `kept ${keep}`);
    assert.deepEqual((await again.verify()).unreadable, []);
    assert.equal(await again.delete("other"), true);
    again.close();
  }
}));

/** An unstorage over unstorage's fs driver in a fresh directory (`body`'s second argument), removed after `body`. */
async function onFs(body) {
  const dir = await mkdtemp(join(tmpdir(), "kvsweep-torn-"));
  try {
    return await body(createStorage({ driver: fsDriver({ base: dir }) }), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a record torn while its copy holds the write under way reads as that write; both torn, it is reported, not guessed", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  await s.put("k", 1);
  await s.put("k", 2);
  const main = await keyOf(storage, "kvsweep/m/\0k");
  await tear(storage, main, 5);
  assert.equal(await new Sweeper(kvStore(storage)).get("k"), 2);
  await tear(storage, main + "~", 5);
  // Said as what it is (it said "not one kvsweep wrote: not a versioned record").
  await assert.rejects(new Sweeper(kvStore(storage)).get("k"), /could not be read: record ends early \(a write cut short by a crash\?\)/);
  // A put replaces it.
  const after = new Sweeper(kvStore(storage));
  await after.put("k", 3);
  assert.equal(await after.get("k"), 3);
}));

test("another program's file at a record's name, beginning as a frame does ('k'), reads as not kvsweep's, not as a write cut short (review)", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  await s.put("k", 1);
  const main = await keyOf(storage, "kvsweep/m/\0k");
  await storage.removeItem(main + "~");
  await storage.setItemRaw(main, new TextEncoder().encode("keep this"));
  await assert.rejects(new Sweeper(kvStore(storage)).get("k"), /could not be read: record is not one kvsweep wrote/);
  // A frame cut short (its header says more than is there) reads as cut short.
  await storage.setItemRaw(main, new Uint8Array([0x6b, 40, 0, 0, 0, 1, 2]));
  await assert.rejects(new Sweeper(kvStore(storage)).get("k"), /record ends early/);
}));

test("other backends of unstorage (memory) replace a value whole: their records are kept once, unframed", async () => {
  const storage = createStorage();
  const s = new Sweeper(kvStore(storage));
  await s.put("k", 1);
  assert.ok(!(await storage.getKeys()).some((k) => k.endsWith("~")));
  assert.ok([0x92, 0x93].includes(new Uint8Array(await storage.getItemRaw(await keyOf(storage, "kvsweep/m/\0k")))[0]), "a record as kvsweep encodes it");
});

test("an unstorage store whose format marker is gone, or torn, is told by its names: this release's stay readable (upper-case keys too)", async () => {
  for (const spoil of [(st, k) => st.removeItem(k), (st, k) => st.setItemRaw(k, new Uint8Array(0)), (st) => st.clear()]) {
    const storage = createStorage();
    const s = new Sweeper(kvStore(storage));
    await s.put("Photo", "p", { namespace: "Team" });
    await s.put("index", "i");
    const marker = await keyOf(storage, "kvsweep/kvsweep-names-format");
    assert.ok(marker, "marked");
    if (spoil.length === 1) {
      // The app clears the storage while the store is open: written again, unmarked.
      await spoil(storage);
      await s.put("Photo", "p2", { namespace: "Team" });
      await s.put("index", "i2");
    } else await spoil(storage, marker);
    s.close();
    const again = new Sweeper(kvStore(storage));
    assert.ok(["p", "p2"].includes(await again.get("Photo", { namespace: "Team" })), spoil.toString());
    const keys = [];
    for await (const k of again.keys({ namespace: "Team" })) keys.push(k);
    assert.deepEqual(keys, ["Photo"], spoil.toString());
    await again.put("Fresh", 1);
    assert.equal(await again.get("Fresh"), 1);
    assert.equal((await storage.getKeys()).filter((k) => k.includes("Fresh")).length, 0, "written in this release's names");
    again.close();
  }
});

test("an unstorage store holding kvsweep names of both formats and no marker is refused, saying so", async () => {
  const storage = createStorage();
  const s = new Sweeper(kvStore(storage));
  await s.put("Photo", "p");
  s.close();
  await storage.removeItem(await keyOf(storage, "kvsweep/kvsweep-names-format"));
  // An earlier release's record beside them (its name keeps case).
  await storage.setItemRaw(encodeURIComponent("kvsweep/m/\0Old"), new Uint8Array([0x93, 1]));
  await assert.rejects(new Sweeper(kvStore(storage)).get("Photo"), /holds kvsweep records under names of two releases/);
});

test("on unstorage's fs driver, a key is refused up front when its records' file names would pass 255 bytes, so the longest a first put takes is put again", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  for (const letter of ["k", "K"]) {
    // The longest key of this letter a put takes.
    let lo = 1;
    let hi = 300;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const ok = await s.put(letter.repeat(mid), 1).then(() => true, (e) => {
        assert.match(e.message, /^kvsweep: put\(".*?\): key is \d+ bytes, too long for an unstorage store: .*a key may have at most \d+ bytes, each byte but a-z, 0-9, _ and - counting three/);
        return false;
      });
      if (ok) lo = mid;
      else hi = mid - 1;
    }
    const longest = letter.repeat(lo);
    assert.ok(lo > 20, `${letter}: ${lo}`);
    await s.put(longest, 2); // a rewrite names two writes in its temp
    await s.put(longest, 3, { ttlMs: 60_000 });
    assert.equal(await s.get(longest), 3);
    assert.equal(await s.get(letter.repeat(lo + 1)), undefined, "a key too long is simply absent");
    assert.equal(await s.delete(longest), true);
  }
}));

/** `storage` with its next `method` call on a key ending `suffix` failing, as a crash there would leave it (a write cut to 3 bytes). */
function failNext(storage, method, suffix) {
  const real = storage[method].bind(storage);
  storage[method] = async (key, ...rest) => {
    if (!key.endsWith(suffix)) return real(key, ...rest);
    storage[method] = real;
    if (method === "setItemRaw") await real(key, new Uint8Array(rest[0]).slice(0, 3));
    throw new Error(`EIO: ${method} of ${key} cut short`);
  };
}

test("a record whose main is torn already is written main first: a second crash, in the next write's copy, loses nothing (review)", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  await s.put("doc", "v1");
  await s.put("doc", "v2");
  const main = await keyOf(storage, "kvsweep/m/\0doc");
  await tear(storage, main, 4); // a crash mid-main
  const next = new Sweeper(kvStore(storage));
  assert.equal(await next.get("doc"), "v2");
  failNext(storage, "setItemRaw", "%00doc~"); // and another, mid-copy of the next write
  await assert.rejects(next.put("doc", "v3"), /EIO/);
  assert.ok(["v2", "v3"].includes(await new Sweeper(kvStore(storage)).get("doc")));
}));

test("a delete removes the main first: a crash before its copy goes leaves the record gone or whole, never torn alone (review)", () => onFs(async (storage) => {
  const s = new Sweeper(kvStore(storage));
  await s.put("doc", "v1");
  const main = await keyOf(storage, "kvsweep/m/\0doc");
  await tear(storage, main, 4);
  failNext(storage, "removeItem", "%00doc~");
  await assert.rejects(new Sweeper(kvStore(storage)).delete("doc"), /EIO/);
  assert.equal(await new Sweeper(kvStore(storage)).get("doc"), undefined);
  const plan = await new Sweeper(kvStore(storage)).plan({ mode: "full" });
  assert.deepEqual(plan.summary.corrupt, []);
}));

test("through a prefixStorage over an fs mount (Nitro's useStorage(\"data\")), records are kept twice and keys held to file names too (review)", () => onFs(async (_, dir) => {
  const { prefixStorage } = await import("unstorage");
  const root = createStorage();
  root.mount("data", fsDriver({ base: dir }));
  const data = prefixStorage(root, "data");
  const s = new Sweeper(kvStore(data));
  await s.put("doc", 1);
  assert.ok((await data.getKeys()).some((k) => k.endsWith("%00doc~")), "a copy");
  await assert.rejects(s.put("k".repeat(230), 1), /too long for an unstorage store/);
}));

test("a blob's temp, which a putBlob of the same bytes writes again in place, torn by a crash reads as its copy: no run reports it unreadable, and one past its age cleans it up (review, left last session)", () => onFs(async (storage) => {
  const { createHash } = await import("node:crypto");
  const bytes = new TextEncoder().encode("photo");
  const id = createHash("sha256").update(bytes).digest("hex");
  // A putBlob whose bytes cannot be written leaves its temp; a second one writes it again.
  const flaky = Object.create(storage);
  flaky.setItemRaw = (k, v) => (decodeURIComponent(k).startsWith("kvsweep/b/") ? Promise.reject(new Error("EIO")) : storage.setItemRaw(k, v));
  let now = Date.now();
  const clock = () => now;
  const first = new Sweeper(kvStore(flaky), { clock });
  await assert.rejects(first.putBlob(bytes), /EIO/);
  await assert.rejects(first.putBlob(bytes), /EIO/);
  first.close();
  const temp = await keyOf(storage, `kvsweep/t/\0b:${id}`);
  assert.ok(temp, "the temp is there");
  for (const keep of [0, 3]) {
    await tear(storage, temp, keep);
    const s = new Sweeper(kvStore(storage), { clock });
    const { summary } = await s.plan({ mode: "full" });
    assert.deepEqual(summary.corruptTemps, [], `kept ${keep}`);
    assert.equal(summary.temps, 1, `kept ${keep}: the temp, read`);
    assert.deepEqual((await s.run({ mode: "full" })).deleted, {}, `kept ${keep}: the temp is young`);
    s.close();
  }
  now += 25 * 60 * 60 * 1000;
  const later = new Sweeper(kvStore(storage), { clock });
  const report = await later.run({ mode: "full" });
  assert.equal(report.deleted.staleTemp?.count, 1, JSON.stringify(report.deleted));
  assert.ok(!(await storage.getKeys()).some((k) => decodeURIComponent(k).includes("\0b:")), "temp and copy gone");
  // And the bytes go in whole now.
  assert.equal(await later.putBlob(bytes), id);
  assert.deepEqual(await later.getBlob(id), bytes);
  later.close();
}));
