// Every `js` block of README.md runs against the built package, in a fresh
// Node process with fake-indexeddb, so the README cannot throw again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const readme = readFileSync(join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
const pkg = pathToFileURL(join(root, "pkg", "node.js")).href;
const fakeIdb = pathToFileURL(join(root, "node_modules", "fake-indexeddb", "auto", "index.mjs")).href;

test("README.md has js blocks to run", () => {
  assert.ok(blocks.length > 0);
});

blocks.forEach((code, i) => {
  test(`README.md js block ${i + 1} runs without throwing`, () => {
    assert.match(code, /from "kvsweep"/, "a README block imports the package by its name");
    const dir = mkdtempSync(join(tmpdir(), "kvsweep-readme-"));
    const file = join(dir, `block${i + 1}.mjs`);
    writeFileSync(file, `import ${JSON.stringify(fakeIdb)};\n${code.replaceAll('from "kvsweep"', `from ${JSON.stringify(pkg)}`)}`);
    const run = spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 60_000 });
    // console.assert prints "Assertion failed" rather than throwing: count it as a failure.
    assert.equal(run.status, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /Assertion failed/, run.stderr);
  });
});
