// The values a put must give back exactly (issue #8), shared by the Node
// tests (memory store, fake-indexeddb) and the Chromium test (real IndexedDB).
// Runs in Node and in a page: no imports.

/** [name, value] pairs: every structured-clone type IndexedDB users store. */
export function fidelityCases() {
  const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
  sparse.length = 5;
  return [
    ["negative zero", -0],
    ["undefined in an object", { u: undefined, k: 1 }],
    ["undefined in an array", [undefined, null]],
    ["a sparse array", sparse],
    ["an own __proto__ key", JSON.parse('{"__proto__": {"x": 1}, "a": 2}')],
    ["an ArrayBuffer", new Uint8Array([1, 2, 3]).buffer],
    ["a Uint8Array inside", { bytes: new Uint8Array([0, 255]) }],
    ["a Map", new Map([[1, "a"], [{ k: 1 }, new Date(5)], ["m", new Map([[2n, -0]])]])],
    ["a Set", new Set([1, "x", 2n, new Set([null])])],
    ["a BigInt", 123456789012345678901234567890n],
    ["a negative BigInt", -5n],
    ["a Date in a Map", new Map([["when", new Date(1_700_000_000_123)]])],
    ["a Float64Array", new Float64Array([1.5, -0, NaN, Infinity])],
    ["an Int16Array", new Int16Array([-1, 2, 32767])],
    ["a BigInt64Array", new BigInt64Array([-1n, 2n])],
    ["a view on part of a buffer", new Uint16Array(new Uint8Array([1, 2, 3, 4, 5, 6]).buffer, 2, 2)],
    ["a DataView", new DataView(new Uint8Array([9, 8, 7]).buffer)],
    ["a lone surrogate in a string", "a\ud800b"],
    ["a lone surrogate in a key", { ["k\udc00"]: 1 }],
    ["NaN and infinities", [NaN, Infinity, -Infinity]],
    ["integers past 2^53 and fractions", [2 ** 53 + 2, -(2 ** 60), 0.1, 1e-300]],
    ["a deep value", deep(900)],
    ["nested kinds", { a: [{ b: new Map([["c", new Set([new Date(7), undefined])]]) }] }],
  ];
}

function deep(n) {
  let v = "leaf";
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

/** Strict sameness: Object.is for primitives, holes, own keys, kinds and bytes. */
export function same(a, b) {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return Object.is(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return Object.is(a.getTime(), b.getTime());
  if (a instanceof ArrayBuffer) return same(new Uint8Array(a), new Uint8Array(b));
  if (ArrayBuffer.isView(a)) {
    const bytes = (v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const [x, y] = [bytes(a), bytes(b)];
    return x.length === y.length && x.every((byte, i) => byte === y[i]);
  }
  if (a instanceof Map || a instanceof Set) {
    const [x, y] = [[...a.entries()], [...b.entries()]];
    return x.length === y.length && x.every((e, i) => same(e[0], y[i][0]) && same(e[1], y[i][1]));
  }
  if (Array.isArray(a) && a.length !== b.length) return false;
  const [ka, kb] = [Reflect.ownKeys(a), Reflect.ownKeys(b)];
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => same(Object.getOwnPropertyDescriptor(a, k).value, Object.getOwnPropertyDescriptor(b, k).value));
}

/** Puts every case and reads it back: the names of those that came back different. */
export async function roundTripFailures(sweeper) {
  const failures = [];
  for (const [name, value] of fidelityCases()) {
    await sweeper.put(name, value);
    const back = await sweeper.get(name);
    if (!same(back, value)) failures.push(name);
  }
  return failures;
}
