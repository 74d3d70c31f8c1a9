// One cleanup scenario for every key–value backend (issue #10): Node (Map,
// unstorage, keyv, a generic object, a Workers KV double), real Deno KV and
// real workerd (Workers KV, Durable Objects). No imports: the caller passes
// the package and a way to list the backend's own keys, which the scenario
// reads directly to check what survived — not just what the report says.

const T0 = 1_800_000_000_000;
const MIN = 60_000;

export const POLICY = { orphanGraceMs: 2 * MIN, tempMaxAgeMs: 2 * MIN };

function bytes(n, seed) {
  const out = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function fail(message) {
  throw new Error(`kv scenario: ${message}`);
}

function sameBytes(a, b) {
  return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Every key of a Workers KV namespace, paging on until the listing is complete. */
export async function kvNamesOf(kv) {
  const names = [];
  let cursor;
  do {
    const page = await kv.list({ cursor });
    names.push(...page.keys.map((k) => k.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return names;
}

/** The kvsweep records a backend holds, from its raw key names (see kv.js for the layout). */
export function recordsOf(names, prefix = "kvsweep/") {
  const out = { m: [], v: [], b: [], c: [], t: [], n: [], s: [] };
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const table = rest[0];
    const cut = rest.indexOf("\0");
    if (rest[1] !== "/" || cut < 0 || !(table in out)) continue;
    out[table].push(rest.slice(cut + 1));
  }
  for (const k of Object.keys(out)) out[k].sort();
  return out;
}

/**
 * Writes entries with TTLs, refs, a dependent, shared blobs (one large
 * enough to be split on Deno KV and Durable Objects), deletes one, then
 * cleans with `run(runOptions)` repeated until done. Returns what it saw.
 * `pkg`: { Sweeper }; `names()`: every raw key of the backend.
 */
export async function kvScenario(pkg, store, names, runOptions = {}) {
  let now = T0;
  const sweeper = new pkg.Sweeper(store, { clock: () => now, policy: POLICY });
  const small = await sweeper.putBlob(bytes(300, 1));
  const large = await sweeper.putBlob(bytes(200_000, 2));
  const lonely = await sweeper.putBlob(bytes(50, 3));
  // Large enough to be split on Deno KV and Durable Objects, and garbage by the end.
  const bigLonely = await sweeper.putBlob(bytes(150_000, 5));
  if ((await sweeper.putBlob(bytes(300, 1))) !== small) fail("the same bytes got another id");

  const values = {
    "keep-1": { text: "kept", when: new Date(5), tags: new Set(["a", 2n]), m: new Map([[1, -0]]) },
    "keep-2": new Uint8Array([1, 2, 3]),
    "big-value": bytes(100_000, 4),
    "ttl-short": "expires in a minute",
    "ttl-long": [1, undefined, 3],
    child: "kept by its parent",
    parent: { of: "child" },
    orphan: "a dependent nothing references",
    gone: "deleted by hand",
  };
  await sweeper.put("keep-1", values["keep-1"], { blobs: [small] });
  await sweeper.put("keep-2", values["keep-2"], { blobs: [small, large] });
  await sweeper.put("big-value", values["big-value"]);
  await sweeper.put("ttl-short", values["ttl-short"], { ttlMs: MIN, blobs: [lonely, bigLonely] });
  await sweeper.put("ttl-long", values["ttl-long"], { ttlMs: 60 * MIN });
  await sweeper.put("child", values.child, { dependent: true });
  await sweeper.put("parent", values.parent, { refs: ["child"] });
  await sweeper.put("orphan", values.orphan, { dependent: true });
  await sweeper.put("gone", values.gone);
  if ((await sweeper.delete("gone")) !== true) fail("delete of an existing entry did not say true");
  if ((await sweeper.delete("gone")) !== false) fail("delete of a missing entry did not say false");

  now += 5 * MIN;
  const plan = await sweeper.plan();
  const planned = plan.actions.map((a) => `${a.kind}:${a.key ?? a.id}:${a.reason}`).sort();

  const reports = [];
  for (let i = 0; i < 1000; i++) {
    const report = await sweeper.run({ mode: "full", ...runOptions });
    reports.push(report);
    if (report.done) break;
  }
  if (!reports.at(-1).done) fail("the cleanup did not finish in 1,000 runs");

  // What get returns: survivors exactly as put, the rest gone.
  const survivors = ["keep-1", "keep-2", "big-value", "ttl-long", "child", "parent"];
  for (const key of survivors) {
    const got = await sweeper.get(key);
    if (got === undefined) fail(`${key} was lost`);
  }
  const k1 = await sweeper.get("keep-1");
  if (!(k1.when instanceof Date) || k1.when.getTime() !== 5 || !k1.tags.has(2n) || !Object.is(k1.m.get(1), -0)) {
    fail("keep-1 changed on its way through the store");
  }
  if (!sameBytes(await sweeper.get("keep-2"), values["keep-2"])) fail("keep-2 changed");
  if (!sameBytes(await sweeper.get("big-value"), values["big-value"])) fail("big-value changed");
  const tl = await sweeper.get("ttl-long");
  if (tl.length !== 3 || tl[1] !== undefined || !(1 in tl)) fail("ttl-long changed");
  for (const key of ["ttl-short", "orphan", "gone"]) {
    if ((await sweeper.get(key, { includeExpired: true })) !== undefined) fail(`${key} is still there`);
  }
  if (!sameBytes(await sweeper.getBlob(large), bytes(200_000, 2))) fail("the large blob changed");
  if ((await sweeper.getBlob(lonely)) !== undefined) fail("the blob only an expired entry held is still there");
  if ((await sweeper.getBlob(bigLonely)) !== undefined) fail("the large blob only an expired entry held is still there");

  // What the backend holds, read directly.
  const records = recordsOf(await names());
  const after = await sweeper.plan();
  return {
    planned,
    reports,
    records,
    leftover: after.actions.length,
    expected: {
      entries: [...survivors].sort(),
      blobs: [small, large].sort(),
      planned: [
        `blob:${lonely}:orphanBlob`,
        `blob:${bigLonely}:orphanBlob`,
        "entry:orphan:unreachable",
        "entry:ttl-short:expired",
      ].sort(),
    },
    sweeper,
  };
}

/** Checks a scenario's outcome with `assert` (node:assert or a small one). */
export function checkScenario(out, assert) {
  assert.deepEqual(out.planned, out.expected.planned);
  assert.deepEqual(out.records.m, out.expected.entries);
  assert.deepEqual(out.records.b, out.expected.blobs);
  assert.deepEqual(out.records.c, out.expected.blobs);
  assert.deepEqual(out.records.t, [], "no temp is left");
  // One value record per surviving entry whose value is not inline, none other.
  for (const v of out.records.v) {
    assert.ok(out.expected.entries.includes(v.slice(0, v.lastIndexOf("\u0001"))), `value ${JSON.stringify(v)} belongs to a survivor`);
  }
  assert.equal(out.leftover, 0, "nothing left to clean");
  // The last report counts every run it went on from.
  const { deleted } = out.reports.at(-1);
  assert.equal(deleted.expired?.count, 1);
  assert.equal(deleted.unreachable?.count, 1);
  assert.equal(deleted.orphanBlob?.count, 2);
}
