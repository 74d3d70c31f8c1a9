// A dedicated worker writing blobs to an OPFS store through sync access
// handles (tests/e2e/opfs.test.mjs): the calls a new blob's file costs, and
// files already there under a blob's name (a crash's leftovers, which no
// record claims) met by writes that do not look them up first, also where
// move() does not replace a file.
import * as kv from "/pkg/index.js";
import { opfsFiles } from "/tests/shared/store-names.js";

const name = self.name;
const bytesOf = (seed, size = 70_000) => {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i += 101) b[i] = (i + seed) & 255;
  b[0] = seed;
  return b;
};
const hex = async (b) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))].map((x) => x.toString(16).padStart(2, "0")).join("");
const same = (a, b) => a?.length === b.length && a.every((x, i) => x === b[i]);

// Counted: how many of each call the blobs' writes make.
const calls = { getFileHandle: 0, truncate: 0, move: 0 };
const count = (proto, m) => {
  const f = proto[m];
  proto[m] = function (...a) {
    calls[m]++;
    return f.apply(this, a);
  };
};
count(FileSystemDirectoryHandle.prototype, "getFileHandle");
count(FileSystemSyncAccessHandle.prototype, "truncate");
const moveOwner = Object.hasOwn(FileSystemFileHandle.prototype, "move") ? FileSystemFileHandle.prototype : FileSystemHandle.prototype;
count(moveOwner, "move");

try {
  await kv.deleteOpfs(name);
  const store = await kv.openOpfs(name);
  const sweeper = new kv.Sweeper(store);
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(`kvsweep-${name}`);
  // A file under the name of `blob`'s bytes, holding `bytes`.
  const leave = async (blob, bytes = blob) => {
    const a = await (await dir.getFileHandle(await hex(blob), { create: true })).createSyncAccessHandle();
    a.write(bytes, { at: 0 });
    a.close();
  };
  const out = {};

  // New blobs: one getFileHandle (the part file), no truncate, one move each.
  const fresh = [1, 2, 3, 4].map((s) => bytesOf(s));
  for (const k in calls) calls[k] = 0;
  for (const b of fresh) await sweeper.putBlob(b);
  out.freshCalls = { ...calls };

  // Files left under their blobs' names, whole and cut short: replaced by the move.
  const whole = bytesOf(5);
  const cut = bytesOf(6);
  await leave(whole);
  await leave(cut, cut.subarray(0, 1000));
  const ids = [await sweeper.putBlob(whole), await sweeper.putBlob(cut)];

  // Where move() does not replace a file, the put goes again the usual way,
  // which finds the file there whole and keeps it.
  const move = moveOwner.move;
  moveOwner.move = async function (to) {
    const there = await dir.getFileHandle(to).then(() => true, () => false);
    if (there) throw new DOMException("the destination exists", "InvalidModificationError");
    return move.call(this, to);
  };
  const kept = bytesOf(7);
  await leave(kept);
  ids.push(await sweeper.putBlob(kept));
  moveOwner.move = move;

  out.read = [];
  for (const [i, b] of [whole, cut, kept].entries()) out.read.push(same(await sweeper.getBlob(ids[i]), b));
  out.files = await opfsFiles(name);
  out.ids = [...(await Promise.all(fresh.map(hex))), ...ids].sort();
  sweeper.close();
  store.close();
  await kv.deleteOpfs(name);
  self.postMessage({ out });
} catch (e) {
  self.postMessage({ error: String(e?.stack ?? e) });
}
