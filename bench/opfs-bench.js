// The OPFS benchmark's code, run on a page's main thread and in a dedicated
// worker (scripts/bench-opfs.mjs): writing and deleting the same files with
// kvsweep (putBlob; a run deleting them as orphans) and with plain OPFS code
// (one file each: createWritable on the main thread, a sync access handle in
// a worker; removeEntry), each timed in the same run, medians of rounds.

function blobs(n, size, seed) {
  return Array.from({ length: n }, (_, i) => {
    const b = new Uint8Array(size);
    for (let j = 0; j < size; j += 64) b[j] = (i * 131 + j + seed) & 255;
    b[0] = i & 255;
    b[1] = i >> 8;
    b[2] = seed & 255;
    return b;
  });
}

const now = () => performance.now();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function plainRound(root, data) {
  const dir = await root.getDirectoryHandle("plain-bench", { create: true });
  const names = data.map((_, i) => `f${i}`);
  let t = now();
  for (let i = 0; i < data.length; i++) {
    const handle = await dir.getFileHandle(names[i], { create: true });
    if (typeof handle.createSyncAccessHandle === "function") {
      const access = await handle.createSyncAccessHandle();
      access.write(data[i], { at: 0 });
      access.flush();
      access.close();
    } else {
      const w = await handle.createWritable();
      await w.write(data[i]);
      await w.close();
    }
  }
  const write = now() - t;
  t = now();
  for (const name of names) await dir.removeEntry(name);
  const remove = now() - t;
  await root.removeEntry("plain-bench", { recursive: true });
  return { write, remove };
}

async function kvsweepRound(kv, data) {
  await kv.deleteOpfs("bench");
  const store = await kv.openOpfs("bench");
  const sweeper = new kv.Sweeper(store, { policy: { orphanGraceMs: 0 } });
  let t = now();
  for (const b of data) await sweeper.putBlob(b);
  const write = now() - t;
  // Nothing references them: one run deletes every blob (records and files).
  t = now();
  const report = await sweeper.run();
  const remove = now() - t;
  const deleted = report.deleted.orphanBlob?.count ?? 0;
  sweeper.close();
  store.close();
  await kv.deleteOpfs("bench");
  return { write, remove, deleted };
}

/** `rounds` rounds of `n` files of `size` bytes each, plain and kvsweep interleaved. */
export async function benchOpfs(kv, n, size, rounds) {
  const root = await navigator.storage.getDirectory();
  const data = blobs(n, size, 1);
  const plain = [];
  const ours = [];
  for (let r = 0; r < rounds; r++) {
    plain.push(await plainRound(root, data));
    ours.push(await kvsweepRound(kv, data));
  }
  const pick = (rs, k) => median(rs.map((x) => x[k]));
  return {
    plainWrite: pick(plain, "write"),
    plainRemove: pick(plain, "remove"),
    write: pick(ours, "write"),
    remove: pick(ours, "remove"),
    writeRatio: median(ours.map((x, i) => plain[i].write / x.write)),
    removeRatio: median(ours.map((x, i) => plain[i].remove / x.remove)),
    deleted: Math.min(...ours.map((x) => x.deleted)),
  };
}
