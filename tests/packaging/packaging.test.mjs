// The packaging matrix of issue #13: `npm pack` of the built package, then
// the tarball installed into throwaway projects (one per runtime, each in a
// temporary directory outside the workspace) and imported there as a user
// would: a Vite build loaded in Chromium, plain Node ESM, a Worker bundled by
// esbuild and run in workerd (miniflare), Deno, and tsc over the package's
// declarations. The tools come from the workspace's node_modules; kvsweep
// must come from the throwaway's, and every test checks that it did.
//
// pkg/ is what scripts/build.sh built; the files of pkg-template/ are copied
// over it first (the build's last step does the same), so that a change to
// them is tested without a rebuild.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { build as viteBuild } from "vite";
import { build as esbuild } from "esbuild";
import { Miniflare } from "miniflare";
import { CHROMIUM, ARGS, within } from "../shared/chromium.mjs";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const fixtures = join(root, "tests", "packaging", "fixtures");
const work = realpathSync(mkdtempSync(join(tmpdir(), "kvsweep-packaging-")));
after(() => rmSync(work, { recursive: true, force: true }));

// ---------------------------------------------------------------- helpers

/**
 * The environment of a child process: without what `npm test` and
 * `node --test` put there (npm_config_local_prefix would point npm at the
 * workspace; NODE_OPTIONS could preload workspace modules).
 */
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && k !== "NODE_OPTIONS" && k !== "NODE_TEST_CONTEXT") env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

/** Runs a program; resolves with its exit code (0, a number, or why it did not exit) and output. */
function run(file, args, { cwd, env = {}, timeout = 120_000 } = {}) {
  return new Promise((done) => {
    execFile(file, args, { cwd, env: childEnv(env), timeout, maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      done({ code: error ? (error.signal ?? error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const output = (r) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

/** npm, offline, with an empty cache of its own: nothing can come from the registry or an earlier install. */
const npmEnv = () => ({
  npm_config_cache: join(work, "npm-cache"),
  npm_config_offline: "true",
  npm_config_update_notifier: "false",
  npm_config_audit: "false",
  npm_config_fund: "false",
});

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Why pkg/ is not a complete build, or undefined if it is. */
function pkgProblem(dir) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  } catch (e) {
    return `package.json: ${e.message}`;
  }
  const absent = manifest.files.filter((f) => !existsSync(join(dir, f)));
  if (absent.length) return `missing ${absent.join(", ")}`;
  if (!WebAssembly.validate(readFileSync(join(dir, "kvsweep_bg.wasm")))) return "kvsweep_bg.wasm does not validate";
  return undefined;
}

// ------------------------------------------------------- the packed tarball

let packing;
/** pkg/ (with pkg-template/ over it) copied, packed with npm pack, and the tarball unpacked: memoised. */
function packed() {
  packing ??= (async () => {
    const stage = join(work, "stage");
    // pkg/ may be being rebuilt: wait (up to 90 s) for a complete one.
    for (let i = 0; ; i++) {
      const problem = pkgProblem(join(root, "pkg"));
      if (!problem) {
        rmSync(stage, { recursive: true, force: true });
        cpSync(join(root, "pkg"), stage, { recursive: true });
        for (const f of readdirSync(join(root, "pkg-template"))) copyFileSync(join(root, "pkg-template", f), join(stage, f));
        if (!pkgProblem(stage)) break;
      }
      if (i >= 45) throw new Error(`pkg/ is not a complete build (${problem ?? "changed while copied"}); run scripts/build.sh`);
      await sleep(2000);
    }
    const out = join(work, "tarball");
    mkdirSync(out);
    const r = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", out], { cwd: stage, env: npmEnv() });
    assert.equal(r.code, 0, `npm pack failed: ${output(r)}`);
    const [report] = JSON.parse(r.stdout);
    const tarball = join(out, report.filename);
    assert.ok(existsSync(tarball), `no ${tarball}`);
    const listing = await run("tar", ["-tzf", tarball]);
    assert.equal(listing.code, 0, output(listing));
    const entries = listing.stdout.split("\n").filter(Boolean);
    const unpacked = join(work, "unpacked");
    mkdirSync(unpacked);
    const x = await run("tar", ["-xzf", tarball, "-C", unpacked]);
    assert.equal(x.code, 0, output(x));
    const dir = join(unpacked, "package");
    return { tarball, report, entries, dir, manifest: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) };
  })();
  return packing;
}

let declaring;
/**
 * The values (not types) the package's declarations say `kvsweep` and
 * `kvsweep/sw` export, read with the TypeScript compiler API: each runtime's
 * entry must export every one of them (else `import { x } from "kvsweep"`
 * type-checks and then fails to link there).
 */
function declared() {
  declaring ??= packed().then(({ dir }) => {
    const ts = createRequire(join(root, "package.json"))("typescript");
    const files = { main: join(dir, "index.d.ts"), sw: join(dir, "sw.d.ts") };
    const program = ts.createProgram(Object.values(files), { noLib: true, types: [], noEmit: true });
    const checker = program.getTypeChecker();
    const out = {};
    for (const [name, file] of Object.entries(files)) {
      const module = checker.getSymbolAtLocation(program.getSourceFile(file));
      out[name] = checker
        .getExportsOfModule(module)
        .filter((s) => ((s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s).flags & ts.SymbolFlags.Value) !== 0)
        .map((s) => s.name)
        .sort();
    }
    assert.ok(out.main.includes("Sweeper") && out.main.includes("memoryStore") && out.sw.includes("ready"), JSON.stringify(out));
    return out;
  });
  return declaring;
}

function assertExports(label, actual, expected) {
  const missing = expected.filter((n) => !actual.includes(n));
  assert.deepEqual(missing, [], `${label} lacks what its declarations export: ${missing.join(", ")}`);
}

/**
 * A throwaway project in a temporary directory: its package.json, the
 * tarball installed by npm (offline, empty cache), the fixture files of
 * `name` and the shared scenario.
 */
async function project(name) {
  const { tarball, manifest } = await packed();
  const dir = realpathSync(mkdtempSync(join(work, `${name}-`)));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `throwaway-${name}`, private: true, type: "module" }, null, 2));
  const r = await run("npm", ["install", "--prefix", dir, tarball], { cwd: dir, env: npmEnv(), timeout: 60_000 });
  assert.equal(r.code, 0, `npm install of the tarball failed: ${output(r)}`);
  // Installed there, alone: the package brought nothing with it.
  assert.deepEqual(readdirSync(join(dir, "node_modules")).filter((n) => !n.startsWith(".")), ["kvsweep"]);
  const installed = JSON.parse(readFileSync(join(dir, "node_modules", "kvsweep", "package.json"), "utf8"));
  assert.equal(installed.version, manifest.version);
  assert.match(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies.kvsweep, /^file:/);
  copyFileSync(join(fixtures, "scenario.js"), join(dir, "scenario.js"));
  cpSync(join(fixtures, name), dir, { recursive: true });
  return dir;
}

/** What every runtime's scenario must give, on every store. */
function expectedScenario() {
  const blob = sha256("blob bytes");
  return {
    value: { title: "packaged", tags: ["a", "b"], at: "1970-01-02T00:00:00.000Z", big: String(2n ** 70n), bytes: [1, 2, 3], map: [[1, "one"]] },
    blob,
    blobBefore: "blob bytes",
    plan: [
      ["blob", blob, "orphanBlob"],
      ["entry", "holder", "expired"],
      ["entry", "old", "expired"],
    ],
    deleted: { expired: 2, orphanBlob: 1 },
    done: true,
    errors: 0,
    after: { old: null, holder: null, blob: null, keep: "packaged" },
    refused: 'kvsweep: put("keep"): value is a function, which cannot be stored',
  };
}

function assertScenarios(result, stores) {
  assert.equal(result.error, undefined, result.error);
  for (const store of stores) assert.deepEqual(result[store], expectedScenario(), `the scenario on ${store}`);
}

/** The file an `exports` condition path names, in a project's node_modules. */
const installedFile = (dir, file) => join(dir, "node_modules", "kvsweep", file);

// ------------------------------------------------------------------ tests

test("npm pack: the tarball holds every file exports points at, types included, and nothing else", { timeout: 120_000 }, async () => {
  const { entries, report, manifest, dir } = await packed();
  assert.ok(entries.every((e) => e.startsWith("package/")), entries.join("\n"));
  const files = entries.map((e) => e.slice("package/".length)).sort();
  assert.deepEqual(files, report.files.map((f) => f.path).sort(), "tar and npm pack --json agree");

  // Nothing from the development workspace.
  const dev = files.filter((f) => /(^|\/)(src|tests?|node_modules|target|www|scripts|bench|benches|fuzz|pkg-template|docs)\/|\.(rs|toml|lock|map|tsbuildinfo|log)$|package-lock\.json|^\./.test(f));
  assert.deepEqual(dev, [], "development files packed");
  // Only package.json and what `files` lists (npm adds README and LICENSE on its own; they are listed or absent).
  assert.deepEqual(files.filter((f) => f !== "package.json" && !manifest.files.includes(f)), [], "packed but not in files");
  assert.deepEqual(manifest.files.filter((f) => !files.includes(f)), [], "in files but not packed");
  // The licenses that `license` names travel with it, and tools may read its package.json.
  for (const f of ["LICENSE-MIT", "LICENSE-APACHE"]) assert.ok(files.includes(f), `${f} is packed`);
  assert.equal(manifest.license, "MIT OR Apache-2.0");
  assert.equal(manifest.exports["./package.json"], "./package.json");

  // Every target of main, types and exports (every condition, every subpath) is in it.
  const targets = new Set([manifest.main, manifest.types]);
  const walk = (v) => (typeof v === "string" ? targets.add(v) : Object.values(v).forEach(walk));
  walk(manifest.exports);
  const missing = [...targets].map((t) => normalize(t)).filter((t) => !files.includes(t));
  assert.deepEqual(missing, [], "exports names files the tarball lacks");

  // Each entry point's conditions: types first (TypeScript takes the first that matches), each runtime's file.
  const main = manifest.exports["."];
  assert.equal(Object.keys(main)[0], "types");
  assert.equal(Object.keys(manifest.exports["./sw"])[0], "types");
  assert.deepEqual(manifest.exports["./sw"], { types: "./sw.d.ts", workerd: "./workerd.js", deno: "./sw.js", node: "./node.js", default: "./sw.js" });
  assert.deepEqual(
    { types: main.types, workerd: main.workerd, node: main.node, deno: main.deno, default: main.default, sw: manifest.exports["./sw"].default, swTypes: manifest.exports["./sw"].types },
    { types: "./index.d.ts", workerd: "./workerd.js", node: "./node.js", deno: "./index.js", default: "./index.js", sw: "./sw.js", swTypes: "./sw.d.ts" },
  );
  assert.equal(manifest.type, "module");
  for (const f of manifest.sideEffects ?? []) assert.ok(files.includes(normalize(f)), `sideEffects names ${f}, not packed`);

  // Every relative import of a packed module or declaration file, and every
  // `new URL("./x", import.meta.url)`, names a packed file.
  const dangling = [];
  for (const f of files.filter((f) => /\.(js|d\.ts)$/.test(f))) {
    const text = readFileSync(join(dir, f), "utf8");
    const specs = [
      ...text.matchAll(/\b(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g),
      ...text.matchAll(/new URL\(\s*["'](\.{1,2}\/[^"']+)["']\s*,\s*import\.meta\.url/g),
    ].map((m) => m[1]);
    for (const s of specs) {
      const target = normalize(join(f, "..", s));
      const candidates = f.endsWith(".d.ts") ? [target, target.replace(/\.js$/, ".d.ts")] : [target];
      if (!candidates.some((c) => files.includes(c))) dangling.push(`${f} → ${s}`);
    }
  }
  assert.deepEqual(dangling, [], "imports of files not packed");

  // It installs offline because it depends on nothing.
  for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "bundleDependencies", "bundledDependencies"]) {
    assert.equal(manifest[field], undefined, `package.json has ${field}`);
  }
  assert.deepEqual(Object.keys(manifest.scripts ?? {}).filter((s) => /install|prepare/.test(s)), [], "install scripts");
  console.log(`# ${basename(report.filename)}: ${files.length} files, ${report.size} bytes packed, ${report.unpackedSize} unpacked`);
});

test("Vite: a page importing kvsweep and kvsweep/sw builds, the .wasm an asset, and runs in Chromium on IndexedDB", { timeout: 180_000 }, async () => {
  const dir = await project("vite");
  const { dir: packedDir } = await packed();
  const warnings = [];
  const logger = {
    info() {},
    warn: (m) => warnings.push(m),
    warnOnce: (m) => warnings.push(m),
    error: (m) => warnings.push(`error: ${m}`),
    clearScreen() {},
    hasErrorLogged: () => false,
    hasWarned: false,
  };
  const built = await viteBuild({
    root: dir,
    configFile: false,
    envDir: false,
    customLogger: logger,
    logLevel: "warn",
    cacheDir: join(dir, "node_modules", ".vite"),
    build: { outDir: join(dir, "dist"), emptyOutDir: true },
  });
  assert.deepEqual(warnings, [], "Vite warned");
  const chunks = [built].flat().flatMap((b) => b.output);
  const modules = chunks.filter((c) => c.type === "chunk").flatMap((c) => Object.keys(c.modules));
  // kvsweep came from the throwaway's node_modules, through the default condition.
  assert.ok(modules.includes(installedFile(dir, "index.js")), modules.join("\n"));
  assert.ok(modules.includes(installedFile(dir, "sw.js")), modules.join("\n"));
  const outside = modules.filter((m) => m.startsWith("/") && !m.startsWith(dir + "/"));
  assert.deepEqual(outside, [], "modules bundled from outside the throwaway project");

  // The .wasm is an asset of the build, the same bytes as packed, and the code points at it.
  const wasm = chunks.filter((c) => c.type === "asset" && c.fileName.endsWith(".wasm"));
  assert.equal(wasm.length, 1, chunks.map((c) => c.fileName).join(", "));
  const wasmFile = join(dir, "dist", wasm[0].fileName);
  assert.equal(sha256(readFileSync(wasmFile)), sha256(readFileSync(join(packedDir, "kvsweep_bg.wasm"))));
  const code = chunks.filter((c) => c.type === "chunk").map((c) => c.code).join("\n");
  assert.ok(code.includes(basename(wasm[0].fileName)), "the bundle does not name the .wasm asset");

  const served = [];
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "") || "index.html";
    const file = join(dir, "dist", path);
    let body;
    try {
      body = file.startsWith(join(dir, "dist") + "/") ? readFileSync(file) : null;
    } catch {
      body = null;
    }
    const type = types[extname(path)] ?? "application/octet-stream";
    served.push({ path, status: body ? 200 : 404, type });
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": type }).end(body);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.stack ?? e}`));
    page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForSelector("#out[data-done]", { timeout: 60_000 });
    const result = JSON.parse(await page.textContent("#out"));
    assert.deepEqual(errors, []);
    assertScenarios(result, ["memory", "indexedDb", "sw"]);
    assert.equal(result.databases.length, 1, "the IndexedDB database is there");
    const names = await declared();
    assertExports("kvsweep in the browser", result.exports, names.main);
    assertExports("kvsweep/sw in the browser", result.swExports, names.sw);
    // The page fetched the .wasm as application/wasm (instantiateStreaming needs it).
    assert.deepEqual(served.filter((s) => s.path.endsWith(".wasm")), [{ path: wasm[0].fileName, status: 200, type: "application/wasm" }]);
    assert.deepEqual(served.filter((s) => s.status !== 200), [], "requests the server could not answer");
  } finally {
    if (browser) await within(10_000, browser.close(), "closing the browser");
    await within(5_000, new Promise((ok) => server.close(ok)), "closing the server");
  }
});

test("Node ESM: import kvsweep and kvsweep/sw in a plain Node project, through the node condition", { timeout: 120_000 }, async () => {
  const dir = await project("node");
  const r = await run(process.execPath, ["main.mjs"], { cwd: dir, timeout: 60_000 });
  assert.equal(r.code, 0, output(r));
  const result = JSON.parse(r.stdout.trim().split("\n").at(-1));
  assert.deepEqual(result.resolved, {
    main: pathToFileURL(installedFile(dir, "node.js")).href,
    // The service-worker entry too: Node cannot fetch the file: URL sw.js loads from.
    sw: pathToFileURL(installedFile(dir, "node.js")).href,
  });
  assertScenarios(result, ["memory", "map", "sw"]);
  const names = await declared();
  assertExports("kvsweep in Node", result.exports, names.main);
  assertExports("kvsweep/sw in Node", result.swExports, names.sw);
});

test("Cloudflare Worker: bundled by esbuild under the workerd conditions, the .wasm a module, run in workerd on Workers KV", { timeout: 120_000 }, async () => {
  const dir = await project("worker");
  const out = join(dir, "bundle");
  mkdirSync(out);
  // As wrangler does: `.wasm` imports stay imports of a module beside the bundle.
  const wasm = [];
  const wasmModules = {
    name: "wasm-modules",
    setup(b) {
      b.onResolve({ filter: /\.wasm$/ }, (args) => {
        const file = resolve(args.resolveDir, args.path);
        wasm.push(file);
        copyFileSync(file, join(out, basename(file)));
        return { path: `./${basename(file)}`, external: true };
      });
    },
  };
  const built = await esbuild({
    absWorkingDir: dir,
    entryPoints: ["worker.js"],
    outfile: join(out, "worker.js"),
    bundle: true,
    format: "esm",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    metafile: true,
    logLevel: "silent",
    plugins: [wasmModules],
  });
  assert.deepEqual(built.warnings, []);
  const inputs = Object.keys(built.metafile.inputs);
  assert.ok(inputs.includes("node_modules/kvsweep/workerd.js"), inputs.join("\n"));
  assert.deepEqual(inputs.filter((i) => i.startsWith("..") || i.startsWith("/")), [], "bundled from outside the throwaway project");
  assert.deepEqual(wasm, [installedFile(dir, "kvsweep_bg.wasm")]);

  const mf = new Miniflare({
    modules: true,
    scriptPath: join(out, "worker.js"),
    modulesRoot: out,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    kvNamespaces: ["KV"],
    compatibilityDate: "2025-01-01",
  });
  try {
    await mf.ready;
    const res = await mf.dispatchFetch("http://worker/");
    const result = await res.json();
    assert.equal(res.status, 200, result.error);
    assertScenarios(result, ["memory", "workersKv"]);
    // The Workers KV binding holds what the scenario kept, and not what it deleted.
    const names = [];
    const kvNs = await mf.getKVNamespace("KV");
    let cursor;
    do {
      const page = await kvNs.list({ cursor });
      names.push(...page.keys.map((k) => k.name));
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    assert.ok(names.some((n) => n.startsWith("kvsweep/m/") && n.endsWith("keep")), names.join("\n"));
    assert.deepEqual(names.filter((n) => /(old|holder)$/.test(n)), [], "deleted entries still in KV");
    assertExports("kvsweep in workerd", result.exports, (await declared()).main);
  } finally {
    await mf.dispose();
  }
});

test("Deno: import kvsweep and kvsweep/sw from node_modules, type-checked, on Deno KV", { timeout: 120_000 }, async () => {
  const dir = await project("deno");
  const denoDir = join(work, "deno-dir");
  const r = await run(
    join(root, "node_modules", ".bin", "deno"),
    ["run", "--check", "--cached-only", "--no-prompt", "--unstable-kv", `--allow-read=${dir}`, "main.ts"],
    { cwd: dir, env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" }, timeout: 100_000 },
  );
  assert.equal(r.code, 0, output(r));
  const result = JSON.parse(r.stdout.trim().split("\n").at(-1));
  // The deno condition: the main entry (it fetches the .wasm by file URL).
  assert.deepEqual(result.resolved, {
    main: pathToFileURL(installedFile(dir, "index.js")).href,
    sw: pathToFileURL(installedFile(dir, "sw.js")).href,
  });
  assertScenarios(result, ["memory", "denoKv", "sw"]);
  assert.equal(result.emptyPlan, 0);
  assert.ok(result.denoKvKeys.some((k) => k.startsWith("kvsweep/m/") && k.endsWith("keep")), result.denoKvKeys.join("\n"));
  assert.deepEqual(result.denoKvKeys.filter((k) => /(old|holder)$/.test(k)), [], "deleted entries still in Deno KV");
  const names = await declared();
  assertExports("kvsweep in Deno", result.exports, names.main);
  assertExports("kvsweep/sw in Deno", result.swExports, names.sw);
});

test("TypeScript: tsc --strict types kvsweep and kvsweep/sw under moduleResolution bundler (also workerd's conditions) and nodenext", { timeout: 120_000 }, async () => {
  const dir = await project("types");
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const common = ["--strict", "--noEmit", "--listFiles", "--target", "es2022", "--lib", "es2022,esnext.disposable,dom", "--skipLibCheck", "false"];
  const modes = {
    bundler: ["--module", "esnext", "--moduleResolution", "bundler"],
    "bundler, workerd conditions": ["--module", "esnext", "--moduleResolution", "bundler", "--customConditions", "workerd,worker"],
    nodenext: ["--module", "nodenext", "--moduleResolution", "nodenext"],
  };
  const runs = await Promise.all(
    Object.entries(modes).map(async ([mode, flags]) => [mode, await run(process.execPath, [tsc, ...common, ...flags, "usage.ts"], { cwd: dir, timeout: 100_000 })]),
  );
  for (const [mode, r] of runs) {
    assert.equal(r.code, 0, `tsc (${mode}):\n${output(r)}`);
    const listed = r.stdout.split("\n").filter(Boolean);
    for (const f of ["index.d.ts", "sw.d.ts", "kvsweep.d.ts"]) assert.ok(listed.includes(installedFile(dir, f)), `tsc (${mode}) did not read ${f}:\n${listed.join("\n")}`);
    const outside = listed.filter((f) => f.startsWith("/") && !f.startsWith(dir + "/") && !f.startsWith(join(root, "node_modules", "typescript", "lib") + "/"));
    assert.deepEqual(outside, [], `tsc (${mode}) read declarations from outside the throwaway project`);
  }
});
