// kvStore over backends that fold case: unstorage's fs driver on a
// case-insensitive file system (default macOS, Windows), keyv over a
// case-insensitive collation, a generic object of the same kind. Keys and
// namespaces that differ in case alone must stay apart, or writes be refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createStorage, defineDriver } from "unstorage";
import Keyv from "keyv";
import { Sweeper, kvStore } from "../../pkg/node.js";
import { driverOf } from "../../pkg/kv.js";
import { Generic } from "../shared/generic-store.mjs";

/**
 * An unstorage driver that folds case as a case-insensitive, case-preserving
 * file system does: one file per name up to case, listed under the case it
 * was first written in.
 */
const foldingDriver = defineDriver(() => {
  const files = new Map();
  const at = (k) => k.toLowerCase();
  const set = (k, value) => void files.set(at(k), { name: files.get(at(k))?.name ?? k, value });
  return {
    name: "folding",
    hasItem: (k) => files.has(at(k)),
    getItem: (k) => files.get(at(k))?.value ?? null,
    getItemRaw: (k) => files.get(at(k))?.value ?? null,
    setItem: set,
    setItemRaw: set,
    removeItem: (k) => void files.delete(at(k)),
    getKeys: () => [...files.values()].map((f) => f.name),
    clear: () => files.clear(),
  };
});
const foldingStorage = () => createStorage({ driver: foldingDriver() });

/** How releases before the format marker escaped names (case kept). */
const legacyEsc = (n) => encodeURIComponent(n).replace(/\./g, "%2E");

/** Every key of an unstorage and its value, as a sorted array. */
async function contents(storage) {
  const out = [];
  for (const k of await storage.getKeys()) out.push([k, await storage.getItemRaw(k)]);
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * An unstorage store as an earlier release left it: `fill` writes through
 * this release on a plain storage, and its records are then copied into
 * `into` under the earlier names, without the marker.
 */
async function legacyStore(into, fill) {
  const plain = createStorage();
  const s = new Sweeper(kvStore(plain));
  await fill(s);
  s.close();
  // An earlier release kept each record once, as it is: read through this
  // release's kvStore (which takes the frame off), written under the old name.
  const raw = driverOf(plain);
  for (const k of await plain.getKeys()) {
    const name = decodeURIComponent(k);
    if (name === "kvsweep/kvsweep-names-format" || k.endsWith("~")) continue;
    const [[bytes]] = await raw.get([name]);
    await into.setItemRaw(legacyEsc(name), bytes);
  }
  return into;
}

const fill = async (s) => {
  await s.put("User", "upper");
  await s.put("doc.v1", { n: 1 }, { namespace: "Team" });
  await s.put("plain", [1, 2]);
};

const keysOf = async (s, o) => {
  const out = [];
  for await (const k of s.keys(o)) out.push(k);
  return out;
};

test("on an unstorage that folds case, a new store keeps keys and namespaces that differ in case alone apart", async () => {
  const storage = foldingStorage();
  const s = new Sweeper(kvStore(storage));
  await s.put("User", "upper");
  await s.put("user", "lower");
  await s.put("k", "in A", { namespace: "A" });
  await s.put("k", "in a", { namespace: "a" });
  assert.equal(await s.get("User"), "upper");
  assert.equal(await s.get("user"), "lower");
  assert.equal(await s.get("k", { namespace: "A" }), "in A");
  assert.equal(await s.get("k", { namespace: "a" }), "in a");
  assert.deepEqual(await keysOf(s), ["User", "user"]);
  assert.deepEqual(await keysOf(s, { namespace: "A" }), ["k"]);
  assert.deepEqual(await keysOf(s, { namespace: "a" }), ["k"]);
  // No name the backend holds has a letter whose case it could fold (escapes write upper-case hex).
  for (const k of await storage.getKeys()) assert.match(k, /^(?:[a-z0-9_-]|%[0-9A-F]{2})+~?$/, k);
  const report = await s.run({ mode: "full" });
  assert.equal(report.done, true);
  assert.deepEqual(report.deleted, {});
  assert.deepEqual(report.corrupt, []);
  assert.equal(await s.get("User"), "upper");
  assert.equal(await s.get("k", { namespace: "A" }), "in A");
  assert.equal(await s.delete("User"), true);
  assert.equal(await s.get("User"), undefined);
  assert.equal(await s.get("user"), "lower");
  assert.equal(await s.delete("k", { namespace: "a" }), true);
  assert.equal(await s.get("k", { namespace: "A" }), "in A");
  // Another Sweeper on the same storage reads the same.
  const again = new Sweeper(kvStore(storage));
  assert.equal(await again.get("user"), "lower");
  assert.equal(await again.get("User"), undefined);
  s.close();
  again.close();
});

test("an earlier release's unstorage store on a backend that folds case: its records still read, and every write is refused, writing nothing", async () => {
  const storage = await legacyStore(foldingStorage(), fill);
  const before = await contents(storage);
  const s = new Sweeper(kvStore(storage));
  assert.equal(await s.get("User"), "upper");
  assert.deepEqual(await s.get("doc.v1", { namespace: "Team" }), { n: 1 });
  assert.deepEqual(await s.get("plain"), [1, 2]);
  const refusal = /store error: kvStore: this unstorage store folds case \(a case-insensitive file system\?\): kvsweep's records "A" and "a" would be one; its records were written by an earlier release in names that keep case/;
  await assert.rejects(s.put("user", "lower"), refusal);
  await assert.rejects(s.put("other", 1), refusal);
  await assert.rejects(s.delete("plain"), refusal);
  assert.deepEqual(await contents(storage), before, "nothing written, the probe removed");
  assert.equal(await s.get("User"), "upper");
  s.close();
});

test("an earlier release's unstorage store on a case-sensitive backend: its records read after reopening, puts work, and it stays in its format, unmarked", async () => {
  const storage = await legacyStore(createStorage(), fill);
  const s = new Sweeper(kvStore(storage));
  assert.equal(await s.get("User"), "upper");
  await s.put("user", "lower");
  await s.put("New.Key", 3, { namespace: "Team" });
  s.close();
  const reopened = new Sweeper(kvStore(storage));
  assert.equal(await reopened.get("User"), "upper");
  assert.equal(await reopened.get("user"), "lower");
  assert.deepEqual(await reopened.get("doc.v1", { namespace: "Team" }), { n: 1 });
  assert.equal(await reopened.get("New.Key", { namespace: "Team" }), 3);
  assert.deepEqual(await keysOf(reopened, { namespace: "Team" }), ["New.Key", "doc.v1"]);
  assert.deepEqual((await reopened.run({ mode: "full" })).deleted, {});
  const keys = await storage.getKeys();
  assert.ok(!keys.includes("kvsweep%2Fkvsweep-names-format"), "no marker");
  for (const k of keys) assert.equal(k, legacyEsc(decodeURIComponent(k)), "the earlier names");
  assert.ok(!keys.some((k) => decodeURIComponent(k).includes("case-probe")), "the probe removed");
  reopened.close();
});

test("the unstorage names' format marker: written at a new store's first put, not by a read; a marker of another format refuses every call", async () => {
  const storage = createStorage();
  const s = new Sweeper(kvStore(storage));
  assert.equal(await s.get("x"), undefined);
  assert.deepEqual(await keysOf(s), []);
  assert.deepEqual(await storage.getKeys(), [], "a reader writes nothing");
  await s.put("X", 1);
  assert.equal(new TextDecoder().decode(await storage.getItemRaw("kvsweep%2Fkvsweep-names-format")), "kvsweep names 2");
  assert.ok((await storage.getKeys()).includes("kvsweep%2Fm%2F%00%58"), "new names escape upper case");
  s.close();
  // Under another prefix, the marker is that prefix's.
  const other = new Sweeper(kvStore(storage, { prefix: "app/" }));
  await other.put("y", 2);
  assert.ok((await storage.getKeys()).includes("app%2Fkvsweep-names-format"));
  other.close();

  const later = createStorage();
  await later.setItemRaw("kvsweep%2Fkvsweep-names-format", new TextEncoder().encode("kvsweep names 9"));
  const l = new Sweeper(kvStore(later));
  const unknown = /store error: kvStore: this unstorage store's names are in a format this release does not know \(its marker "kvsweep\/kvsweep-names-format" holds "kvsweep names 9"\)/;
  await assert.rejects(l.get("x"), unknown);
  await assert.rejects(l.put("x", 1), unknown);
  await assert.rejects(l.put("x", 1), unknown);
  assert.deepEqual(await later.getKeys(), ["kvsweep%2Fkvsweep-names-format"]);
  l.close();
});

/** A Map that folds case, as a store over a case-insensitive collation does. */
class FoldingMap extends Map {
  get(k) {
    return super.get(typeof k === "string" ? k.toLowerCase() : k);
  }
  set(k, v) {
    return super.set(typeof k === "string" ? k.toLowerCase() : k, v);
  }
  has(k) {
    return super.has(typeof k === "string" ? k.toLowerCase() : k);
  }
  delete(k) {
    return super.delete(typeof k === "string" ? k.toLowerCase() : k);
  }
}

/** A generic get/put/delete/list object that folds case. */
const foldingGeneric = () => new Generic(new FoldingMap());

test("keyv over a store that folds case: writes are refused, reads answer, and the probe leaves nothing", async () => {
  const map = new FoldingMap();
  const s = new Sweeper(kvStore(new Keyv(map)));
  assert.equal(await s.get("User"), undefined);
  const refusal = /store error: kvStore\(x\): this Keyv's store folds case \(a case-insensitive collation\?\): kvsweep's records "A" and "a" would be one; give kvsweep a case-sensitive store/;
  await assert.rejects(s.put("User", 1), refusal);
  await assert.rejects(s.put("user", 2), refusal);
  assert.deepEqual([...map.keys()], []);
  s.close();
  // A keyv that keeps case takes writes, and is left no probe.
  const plain = new Map();
  const ok = new Sweeper(kvStore(new Keyv(plain)));
  await ok.put("User", 1);
  await ok.put("user", 2);
  assert.equal(await ok.get("User"), 1);
  assert.ok(![...plain.keys()].some((k) => k.includes("case-probe")));
  ok.close();
});

test("a generic get/put/delete/list object that folds case: writes are refused, and the probe leaves nothing", async () => {
  const x = foldingGeneric();
  const s = new Sweeper(kvStore(x));
  assert.equal(await s.get("User"), undefined);
  const refusal = /store error: kvStore: this store \(get, put, delete, list\) folds case .*: kvsweep's records "A" and "a" would be one; give kvsweep a case-sensitive store/;
  await assert.rejects(s.put("User", 1), refusal);
  await assert.rejects(s.put("user", 2, { namespace: "A" }), refusal);
  assert.deepEqual([...x.map.keys()], []);
  s.close();
});

test("a new unstorage store is told from an earlier release's by kvsweep's records only: beside an app's keys, under prefix \"\" or \"app\", its writes go, and an app key named like the old marker is no marker", async () => {
  for (const [prefix, foreign] of [["", ["settings", "format"]], ["app", ["apple"]], ["kvsweep/", ["settings"]]]) {
    const storage = foldingStorage();
    for (const k of foreign) await storage.setItem(k, "app data");
    const s = new Sweeper(kvStore(storage, { prefix }));
    await s.put("User", 1, { namespace: "N" });
    await s.put("user", 2, { namespace: "N" });
    assert.equal(await s.get("User", { namespace: "N" }), 1, JSON.stringify(prefix));
    assert.equal(await s.get("user", { namespace: "N" }), 2, JSON.stringify(prefix));
    for (const k of foreign) assert.equal(await storage.getItem(k), "app data", k);
    s.close();
  }
  // Prefixes differing in case alone keep a marker each, and their records apart.
  const storage = foldingStorage();
  const up = new Sweeper(kvStore(storage, { prefix: "App/" }));
  const low = new Sweeper(kvStore(storage, { prefix: "app/" }));
  await up.put("k", 1);
  await low.put("k", 2);
  assert.deepEqual([await up.get("k"), await low.get("k")], [1, 2]);
});

test("two unstorage instances over one new backend: one marks the store and writes while the other is telling its format, and both still take it for new (one file per key)", async () => {
  const { default: memoryDriver } = await import("unstorage/drivers/memory");
  const driver = memoryDriver();
  const a = createStorage({ driver });
  const b = createStorage({ driver });
  const sa = new Sweeper(kvStore(a));
  const sb = new Sweeper(kvStore(b));
  const getItemRaw = b.getItemRaw.bind(b);
  let armed = true;
  b.getItemRaw = async (k, ...rest) => {
    const v = await getItemRaw(k, ...rest);
    if (armed && k.endsWith("kvsweep-names-format")) {
      armed = false;
      await sa.put("Key", "from A"); // between B's read of the marker and its listing
    }
    return v;
  };
  assert.equal(await sb.get("Key"), "from A");
  await sb.put("Key", "from B");
  assert.equal(await sa.get("Key"), "from B");
  assert.deepEqual((await a.getKeys()).filter((k) => k.includes("m%2F")), ["kvsweep%2Fm%2F%00%4Bey"]);
});

test("an earlier release's store whose keys end in \"~\" (as a copy's name does) is still told for what it is, and reads (review)", async () => {
  const storage = await legacyStore(createStorage(), async (s) => {
    await s.put("notes~", "tilde");
    await s.put("plain", 1);
  });
  const s = new Sweeper(kvStore(storage));
  assert.equal(await s.get("notes~"), "tilde");
  assert.deepEqual(await keysOf(s), ["notes~", "plain"]);
});
