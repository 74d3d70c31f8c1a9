// A dedicated worker writing blobs to an OPFS store through sync access
// handles (tests/e2e/opfs.test.mjs): the calls a new blob's file costs, and
// files already under a blob's name, a crash's leftovers (no record claims
// them) or live ones, met by writes that guess the blob new, and by writes
// that do not, also where move() refuses to replace a file.
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
const counted = async (fn) => {
  for (const k in calls) calls[k] = 0;
  const out = await fn();
  return [out, { ...calls }];
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
  const out = { calls: {} };
  const put = async (what, bytes) => {
    const [id, c] = await counted(() => sweeper.putBlob(bytes));
    out.calls[what] = c;
    return id;
  };
  const blobs = {};

  // New blobs, guessed new: the part file and the lookup of the blob's own
  // name (while the part is written), no truncate, one move each.
  const fresh = [1, 2, 3].map((s) => bytesOf(s));
  for (const [i, b] of fresh.entries()) blobs[`fresh${i}`] = [await put(`fresh${i}`, b), b];

  // Leftovers under the blob's name, met by a put that guesses it new:
  // kept when whole (no move), replaced when cut short.
  const whole = bytesOf(5);
  const cut = bytesOf(6);
  await leave(whole);
  await leave(cut, cut.subarray(0, 1000));
  blobs.whole = [await put("whole", whole), whole];
  blobs.cut = [await put("cut", cut), cut];

  // The live file of a blob, put again by another store that guesses it
  // new: left as it is, never moved over.
  const other = await kv.openOpfs(name);
  const second = new kv.Sweeper(other);
  const [again, againCalls] = await counted(() => second.putBlob(fresh[0]));
  out.calls.live = againCalls;
  out.liveSameId = again === blobs.fresh0[0];
  second.close();
  other.close();

  // Where move() refuses to replace a file: blobs over 256 KiB (not
  // guessed new, their record read first), a leftover whole and one cut
  // short, never meet a move over a file.
  const move = moveOwner.move;
  let refused = 0;
  moveOwner.move = async function (to) {
    const there = await dir.getFileHandle(to).then(() => true, () => false);
    if (there) {
      refused++;
      throw new DOMException("the destination exists", "InvalidModificationError");
    }
    return move.call(this, to);
  };
  const bigWhole = bytesOf(7, 300_000);
  const bigCut = bytesOf(8, 300_000);
  await leave(bigWhole);
  await leave(bigCut, bigCut.subarray(0, 5000));
  blobs.bigWhole = [await put("bigWhole", bigWhole), bigWhole];
  blobs.bigCut = [await put("bigCut", bigCut), bigCut];
  moveOwner.move = move;
  out.refused = refused;

  out.read = {};
  for (const [k, [id, b]] of Object.entries(blobs)) out.read[k] = same(await sweeper.getBlob(id), b);
  out.files = await opfsFiles(name);
  out.ids = (await Promise.all(Object.values(blobs).map(([, b]) => hex(b)))).sort();
  sweeper.close();
  store.close();
  await kv.deleteOpfs(name);
  self.postMessage({ out });
} catch (e) {
  self.postMessage({ error: String(e?.stack ?? e) });
}
