// Gives the module's imports and exports short names: wasm-opt renames them
// (--minify-imports-and-exports-and-modules) and prints what it renamed;
// this renames them to match in the wasm-bindgen glue (kvsweep.js) and its
// types. The names are wasm-bindgen's, up to 332 characters each (its
// closure shims): about 2.2 KB gzip of the .wasm, and as much of the glue.
// Usage: node scripts/minify-names.mjs DIR  (DIR holds kvsweep.js, kvsweep.d.ts,
// kvsweep_bg.wasm.d.ts and kvsweep_bg.wasm, not yet renamed)
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = process.argv[2];
const fail = (message) => {
  console.error(`minify-names: ${message}`);
  process.exit(1);
};
if (!dir) fail("usage: node scripts/minify-names.mjs DIR");
const wasmFile = join(dir, "kvsweep_bg.wasm");
const wasmOpt = fileURLToPath(new URL("../node_modules/.bin/wasm-opt", import.meta.url));
const out = execFileSync(
  wasmOpt,
  [wasmFile, "--minify-imports-and-exports-and-modules", "-o", `${wasmFile}.min`],
  { encoding: "utf8", maxBuffer: 1 << 24 },
);
const map = JSON.parse(out.slice(out.indexOf("{")));

// The one module the glue provides, and what wasm-opt named it.
const oldModules = new Set(map.imports.map(([module]) => module));
if (oldModules.size !== 1 || !oldModules.has("./kvsweep_bg.js")) {
  fail(`expected every import from "./kvsweep_bg.js", got ${[...oldModules].join(", ")}`);
}
const minified = new WebAssembly.Module(readFileSync(`${wasmFile}.min`));
const newModules = new Set(WebAssembly.Module.imports(minified).map((i) => i.module));
if (newModules.size !== 1) fail(`expected one module name after renaming, got ${[...newModules].join(", ")}`);
const [newModule] = newModules;

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** Replaces every match of `pattern` in `text` with `to`; returns the text and how many. */
function replace(text, pattern, to) {
  let n = 0;
  const result = text.replace(pattern, () => (n++, to));
  return [result, n];
}

let js = readFileSync(join(dir, "kvsweep.js"), "utf8");
let n;
[js, n] = replace(js, /"\.\/kvsweep_bg\.js": import0/g, `${JSON.stringify(newModule)}: import0`);
if (n !== 1) fail(`the glue names its import module ${n} times, expected 1`);
// Imports: keys of the glue's import object, each once.
for (const [, from, to] of map.imports) {
  [js, n] = replace(js, new RegExp(`(?<=[\\s,{])${escape(from)}(?=\\s*:)`, "g"), to);
  if (n !== 1) fail(`the import ${from} is a key of the glue's imports ${n} times, expected 1`);
  if (new RegExp(`\\b${escape(from)}\\b`).test(js)) fail(`the import ${from} is named elsewhere in the glue`);
}
// Exports: read as `wasm.name` (the glue's own JS functions may keep such a name).
let dts = readFileSync(join(dir, "kvsweep.d.ts"), "utf8");
let bgDts = readFileSync(join(dir, "kvsweep_bg.wasm.d.ts"), "utf8");
for (const [from, to] of map.exports) {
  [js, n] = replace(js, new RegExp(`\\bwasm\\.${escape(from)}\\b`, "g"), `wasm.${to}`);
  const declared = new RegExp(`(?<=\\breadonly |\\bexport const )${escape(from)}(?=\\s*:)`, "g");
  [dts] = replace(dts, declared, to);
  [bgDts] = replace(bgDts, declared, to);
}
// What is left of an old export name may only be a JS function of the glue's
// own that bears it (its closure shims: declared, called, passed): any other
// use (`instance.exports.x`, or `const { x } = wasm` where no such function
// is declared) would read an export by the old name. ("memory" and the like
// are words of the glue's too: skipped.)
for (const [from] of map.exports.filter(([from]) => from.includes("_"))) {
  const own = new RegExp(`\\bfunction ${escape(from)}\\(`).test(js);
  for (const m of js.matchAll(new RegExp(`(.)\\b${escape(from)}\\b`, "g"))) {
    if (own && m[1] !== ".") continue;
    fail(`the glue reads the export ${from} by its old name: ...${m[0]}...`);
  }
}
if (/\bwasm\[/.test(js)) fail("the glue reads an export by a computed name");

writeFileSync(join(dir, "kvsweep.js"), js);
writeFileSync(join(dir, "kvsweep.d.ts"), dts);
writeFileSync(join(dir, "kvsweep_bg.wasm.d.ts"), bgDts);
renameSync(`${wasmFile}.min`, wasmFile);
console.log(`minify-names: ${map.imports.length} imports and ${map.exports.length} exports renamed`);
