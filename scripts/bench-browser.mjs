// kvsweep against plain IndexedDB in headless Chromium (npm run bench).
//
//   node scripts/bench-browser.mjs [--sizes 10000,100000] [--pkg DIR]
//                                  [--only put,get,...] [--json FILE]
//
// Installs what is missing (scripts/setup.sh --browser) and builds pkg/
// (scripts/build.sh) first, unless BENCH_SKIP_BUILD=1 or --pkg names another
// directory. Then, per size, opens bench/index.html in a fresh browser context
// (empty IndexedDB), calls window.runBench(size, only) and prints one Markdown
// table of every size: kvsweep's rate, the plain-IndexedDB baseline's rate from
// the same page run, their ratio, and the target.
//
// Environment: BENCH_SKIP_BUILD=1, CHROMIUM (default /usr/bin/chromium),
// BENCH_TIMEOUT_MIN (per size, default 30), PROFILE=disk (each size in a fresh
// profile on disk, as a user's is; by default an off-the-record context, where
// Chromium keeps IndexedDB in memory).
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { existsSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
const DEFAULT_PKG = join(ROOT, "pkg");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const ON_DISK = process.env.PROFILE === "disk";
const SIZE_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MIN ?? 30) * 60_000;
/** The rows bench/bench.js knows (its ROWS), for --only. */
const ROW_NAMES = ["put", "putMany", "get", "list", "scattered", "adjacent", "range", "background", "sliced", "memory"];

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".ts": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
};

// ---------- command line ----------

/** Reads the flags; exits with a usage message on anything it does not understand. */
function parseCommandLine() {
  const usage =
    "usage: node scripts/bench-browser.mjs [--sizes 10000,100000] [--pkg DIR] [--only put,putMany,...] [--json FILE]";
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        sizes: { type: "string", default: "10000,100000" },
        pkg: { type: "string", default: DEFAULT_PKG },
        only: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    fail(`${e.message}\n${usage}`);
  }
  if (values.help) {
    console.log(`${usage}\nrows for --only: ${ROW_NAMES.join(", ")}, cache (the Cache Storage table), opfs (the OPFS table), maint (the maintenance operations), kv (kvStore over unstorage in Node)`);
    process.exit(0);
  }
  const sizes = values.sizes.split(",").map((s) => Number(s.trim().replace(/_/g, "")));
  if (!sizes.length || sizes.some((n) => !Number.isInteger(n) || n < 2)) fail(`--sizes: integers ≥ 2, got ${values.sizes}`);
  const only = values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : [];
  const tables = ["cache", "opfs", "maint", "kv"];
  const unknown = only.filter((n) => !ROW_NAMES.includes(n) && !tables.includes(n));
  if (unknown.length) fail(`--only: unknown rows ${unknown.join(", ")} (known: ${ROW_NAMES.join(", ")}, ${tables.join(", ")})`);
  // "cache", "opfs", "maint" and "kv": the Cache Storage, OPFS, maintenance and
  // kvStore-over-unstorage tables (scripts/bench-cache.mjs, bench-opfs.mjs,
  // bench-maint.mjs, bench-kv.mjs), after the IndexedDB one.
  const cache = only.length === 0 || only.includes("cache");
  const opfs = only.length === 0 || only.includes("opfs");
  const maint = only.length === 0 || only.includes("maint");
  const kv = only.length === 0 || only.includes("kv");
  const rows = only.filter((n) => !tables.includes(n));
  return { sizes, pkg: resolve(values.pkg), only: rows, json: values.json, cache, opfs, maint, kv, skipPage: only.length > 0 && rows.length === 0 };
}

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

// ---------- setup and build ----------

/** Runs a project script with inherited output; a failure ends the bench. */
function runScript(...args) {
  console.error(`\n== bench: bash ${args.join(" ")}`);
  const r = spawnSync("bash", args, { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) fail(`bash ${args.join(" ")} failed (exit ${r.status ?? r.signal})`);
}

/**
 * The toolchain and a fresh pkg/, unless told to measure a package as it is:
 * BENCH_SKIP_BUILD=1, or --pkg naming a directory other than pkg/ (an older build).
 */
function prepare(pkg) {
  if (process.env.BENCH_SKIP_BUILD === "1") {
    console.error("== bench: BENCH_SKIP_BUILD=1, using the package as it is");
  } else if (pkg !== DEFAULT_PKG) {
    console.error(`== bench: --pkg ${pkg}: measuring that build, not building pkg/`);
  } else {
    runScript("scripts/setup.sh", "--browser");
    runScript("scripts/build.sh");
  }
  if (!existsSync(join(pkg, "index.js"))) fail(`${pkg}/index.js is missing: build the package (npm run build) or pass --pkg`);
  if (!existsSync(CHROMIUM)) fail(`no Chromium at ${CHROMIUM}: run bash scripts/setup.sh --browser, or set CHROMIUM`);
}

// ---------- static server ----------

/** The file under `dir` that `rel` names, or null (outside `dir`, missing, or a directory without index.html). */
async function fileUnder(dir, rel) {
  let file = resolve(dir, `.${sep}${decodeURIComponent(rel)}`);
  if (file !== dir && !file.startsWith(dir + sep)) return null;
  try {
    if ((await stat(file)).isDirectory()) file = join(file, "index.html");
    return (await stat(file)).isFile() ? file : null;
  } catch {
    return null;
  }
}

/**
 * Serves /bench/ from bench/ and /pkg/ from the package being measured, on
 * 127.0.0.1 and a free port (IndexedDB needs a real origin). Nothing is cached,
 * so a rebuilt package is always what runs. Resolves to { url, close }.
 */
async function serveBench(pkgDir) {
  const mounts = [
    ["/bench/", join(ROOT, "bench")],
    ["/pkg/", pkgDir],
  ];
  const server = createServer(async (req, res) => {
    try {
      const { pathname } = new URL(req.url, "http://127.0.0.1");
      const mount = mounts.find(([prefix]) => pathname.startsWith(prefix));
      const file = mount && (await fileUnder(mount[1], pathname.slice(mount[0].length)));
      if (!file) {
        res.writeHead(404, { "content-type": "text/plain", "cache-control": "no-store" }).end("not found");
        return;
      }
      const body = await readFile(file);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "cache-control": "no-store",
      });
      res.end(body);
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(e));
    }
  });
  await new Promise((ok, ko) => {
    server.once("error", ko);
    server.listen(0, "127.0.0.1", ok);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((ok) => server.close(ok)),
  };
}

// ---------- running the page ----------

/** Resolves with `promise`, or rejects after `ms` so a stuck page cannot hang the bench. */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${Math.round(ms / 1000)} s`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One size in a fresh context and page, so IndexedDB starts empty: an
 * off-the-record context of `browser`, or with PROFILE=disk a new profile
 * directory (removed afterwards). The page's [bench] console lines are echoed
 * as progress; its errors are kept for the report.
 */
async function benchOneSize(browser, url, size, only) {
  const profile = ON_DISK ? await mkdtemp(join(tmpdir(), "kvsweep-bench-")) : null;
  const context = ON_DISK
    ? await (await import("playwright-core")).chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, timeout: 60_000 })
    : await browser.newContext();
  context.setDefaultTimeout(SIZE_TIMEOUT_MS);
  const errors = [];
  try {
    const page = await context.newPage();
    page.on("pageerror", (err) => errors.push(err.message));
    page.on("console", (msg) => {
      const text = msg.text();
      if (text.startsWith("[bench]")) console.error(`  ${size}: ${text.slice(8)}`);
      else if (msg.type() === "error") errors.push(text);
    });
    await page.goto(`${url}bench/index.html`);
    try {
      await page.waitForFunction(() => typeof window.runBench === "function", null, { timeout: 60_000 });
    } catch {
      throw new Error(`the page did not load the package: ${errors.join("; ") || "no error reported"}`);
    }
    const result = await within(
      SIZE_TIMEOUT_MS,
      page.evaluate(([n, rows]) => window.runBench(n, rows), [size, only]),
      `size ${size}`,
    );
    result.pageErrors = errors;
    return result;
  } catch (e) {
    return { size, fatal: e.message, rows: {}, warnings: [], pageErrors: errors };
  } finally {
    await within(30_000, context.close(), "closing the context").catch(() => {});
    if (profile) await rm(profile, { recursive: true, force: true });
  }
}

// ---------- the table ----------

const fmtInt = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });

/** 10000 → "10k". */
const sizeLabel = (n) => (n % 1_000_000 === 0 ? `${n / 1e6}M` : n % 1000 === 0 ? `${n / 1000}k` : String(n));

/** Table cells must not contain pipes or line breaks. */
const cell = (s) => String(s).replace(/\|/g, "\\|").replace(/\s+/g, " ");

/** Seconds or milliseconds, whichever reads better. */
const fmtTime = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);

/** A measurement as a rate ("1,234/s", with the time when asked), or its error / n/a. */
function rateCell(m, withTime) {
  if (!m) return "—";
  if (m.na) return "n/a";
  if (m.error) return `error: ${m.error.length > 90 ? `${m.error.slice(0, 90)}…` : m.error}`;
  return `${fmtInt.format(m.rate)}/s${withTime ? ` (${fmtTime(m.ms)})` : ""}`;
}

/** "✓" when `value` meets the target, "✗" when it misses. */
const mark = (ok) => (ok ? "✓" : "✗");

/** kvsweep rate / baseline rate (for the listing: baseline time / kvsweep time), marked against `min`. */
function ratioCell(row, min) {
  const k = row?.kvsweep;
  const b = row?.baseline;
  if (!k || !b || k.error || k.na || b.error || b.na || !(b.rate > 0)) return "—";
  const ratio = k.rate / b.rate;
  return `${ratio.toFixed(2)}${min === undefined ? "" : ` ${mark(ratio >= min)}`}`;
}

/** The heartbeat's longest gap, with the longest long task when there was one. */
function gapText(m) {
  if (!m || m.na || m.error || m.gapMs === undefined) return null;
  const lt = m.longTaskMs ? `, long task ${fmtInt.format(m.longTaskMs)} ms` : "";
  return `${fmtInt.format(m.gapMs)} ms${lt}`;
}

/**
 * The table's rows: a label, a target, and how to fill the three cells of a size
 * from that size's result rows.
 */
const TABLE = [
  rateRow("put (sequential)", "put", 0.9),
  floorRow("floor of put: plain puts of kvsweep's records", "put"),
  rateRow("putMany (1,000 a call)", "putMany", 0.7),
  floorRow("floor of putMany: batched plain puts of kvsweep's records", "putMany"),
  rateRow("get (sequential)", "get", 0.9),
  floorRow("floor of get: plain gets of kvsweep's records", "get"),
  rateRow("listing: plan(full) vs getAllKeys+getAll", "list", 0.8, true),
  rateRow("run(full), scattered garbage vs delMany", "scattered", 0.95, true),
  floorRow("floor of a run, scattered: read every record, then delMany", "scattered", true),
  rateRow("run(full), adjacent garbage vs delMany", "adjacent", 10, true),
  floorRow("floor of a run, adjacent: read every record, then one key-range delete", "adjacent", true),
  gapRow("main-thread gap: listing", "list"),
  gapRow("main-thread gap: run scattered", "scattered"),
  gapRow("main-thread gap: run adjacent", "adjacent"),
  gapRow("main-thread gap: background run (request)", "background"),
  {
    label: "background run in 20 ms slices (sliceMs) vs unsliced",
    key: "sliced",
    target: "—",
    cells: (rows) => [rateCell(rows.sliced?.kvsweep, true), rateCell(rows.sliced?.baseline, true), ratioCell(rows.sliced)],
  },
  gapRow("main-thread gap: background run in 20 ms slices", "sliced"),
  {
    label: "key-range delete of the adjacent half (reference)",
    key: "range",
    target: "reference",
    cells: (rows) => ["—", rateCell(rows.range?.baseline, true), "—"],
  },
  memoryRow("memoryStore put", "memPut"),
  memoryRow("memoryStore get", "memGet"),
  memoryRow("memoryStore run(full), scattered", "memRun", true),
];

/** A rate row with a baseline and a minimum ratio. */
function rateRow(label, key, min, withTime = false) {
  return {
    label,
    key,
    target: `≥ ${min}`,
    cells: (rows) => [rateCell(rows[key]?.kvsweep, withTime), rateCell(rows[key]?.baseline, withTime), ratioCell(rows[key], min)],
  };
}

/**
 * A floor (bench.js, "the floors"): plain code doing kvsweep's I/O, beside
 * the same baseline; its ratio is the most any code keeping kvsweep's stored
 * format reaches.
 */
function floorRow(label, key, withTime = false) {
  return {
    label,
    key,
    floor: true,
    target: "ceiling of the ratio",
    cells: (rows) => {
      const r = rows[key];
      return [rateCell(r?.floor, withTime), rateCell(r?.baseline, withTime), ratioCell(r && { kvsweep: r.floor, baseline: r.baseline })];
    },
  };
}

/** The longest main-thread gap during kvsweep's operation (target ≤ 50 ms) next to the baseline's. */
function gapRow(label, key) {
  return {
    label,
    key,
    target: "≤ 50 ms",
    cells: (rows) => {
      const k = rows[key]?.kvsweep;
      const kText = gapText(k);
      return [kText ? `${kText} ${mark(k.gapMs <= 50)}` : "—", gapText(rows[key]?.baseline) ?? "—", "—"];
    },
  };
}

/** kvsweep on memoryStore(): no baseline, no target. */
function memoryRow(label, key, withTime = false) {
  return { label, key, target: "—", cells: (rows) => [rateCell(rows[key]?.kvsweep, withTime), "—", "—"] };
}

/** One Markdown table over every size; rows no size measured (left out by --only) are left out. */
function renderTable(results) {
  const head = ["operation"];
  for (const r of results) {
    const s = sizeLabel(r.size);
    head.push(`kvsweep ${s}`, `baseline ${s}`, `ratio ${s}`);
  }
  head.push("target");
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const row of TABLE) {
    if (!results.some((r) => (row.floor ? r.rows?.[row.key]?.floor : r.rows?.[row.key]))) continue;
    const cells = [row.label];
    for (const r of results) cells.push(...row.cells(r.rows ?? {}));
    cells.push(row.target);
    lines.push(`| ${cells.map(cell).join(" | ")} |`);
  }
  return lines.join("\n");
}

/** Full error messages, warnings and fatal failures, loudly, under the table. */
function renderProblems(results) {
  const out = [];
  for (const r of results) {
    const s = sizeLabel(r.size);
    if (r.fatal) out.push(`!!! ${s}: the bench failed: ${r.fatal}`);
    for (const [name, row] of Object.entries(r.rows ?? {})) {
      for (const side of ["kvsweep", "baseline", "floor"]) {
        if (row[side]?.error) out.push(`!!! ${s} ${name} (${side}) threw: ${row[side].error}`);
      }
    }
    for (const w of r.warnings ?? []) out.push(`!!! WARNING ${s}: ${w}`);
    for (const e of r.pageErrors ?? []) out.push(`!!! ${s}: page error: ${e}`);
  }
  return out.join("\n");
}

// ---------- main ----------

async function main() {
  const opts = parseCommandLine();
  prepare(opts.pkg);
  const { chromium } = await import("playwright-core");
  const server = await serveBench(opts.pkg);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 60_000 });
  const version = browser.version();
  const results = [];
  try {
    console.error(`== bench: Chromium ${version}, package ${opts.pkg}, sizes ${opts.sizes.join(", ")}`);
    for (const size of opts.sizes) results.push(await benchOneSize(browser, server.url, size, opts.only));
  } finally {
    await within(30_000, browser.close(), "closing the browser").catch(() => {});
    await server.close();
  }

  const first = results.find((r) => r.timedOps !== undefined);
  const where = ON_DISK ? "a profile on disk" : "an off-the-record context (IndexedDB in memory; PROFILE=disk for a profile on disk)";
  console.log(`\n## kvsweep vs plain IndexedDB — Chromium ${version}, ${where}, package ${opts.pkg}\n`);
  console.log(renderTable(results));
  console.log(
    `\nRates per second (time in brackets). ratio = kvsweep rate / baseline rate in the same page run` +
      ` (listing: baseline time / kvsweep time). Values ${first?.valueBytes ?? 200} characters;` +
      ` put and get timed over min(N, 5,000) calls, in 10 slices alternating with the baseline's and the floor's${first && first.hasPutMany === false ? "; this build has no putMany" : ""}.` +
      ` Runs delete the expired half (N/2 entries); the baseline deletes the same keys, one request each, in one transaction.` +
      ` A floor row is plain code doing kvsweep's I/O on its stored format (its records, keys and object stores; for runs, reading every record,` +
      ` as a plan must, then deleting the garbage's records one request each, or as one key range when adjacent), timed beside the same baseline:` +
      ` its ratio estimates the most any code keeping that format reaches (one measurement, not a bound).`,
  );
  const deferred = results
    .filter((r) => typeof r.rows?.get?.deferredMs === "number")
    .map((r) => `${r.size.toLocaleString("en-US")} entries: ${r.rows.get.deferredMs.toFixed(0)} ms`);
  if (deferred.length) {
    console.log(
      `The reads come 2 s after the writes, so each refreshes accessedAt, deferred until reads pause;` +
        ` those refreshes, written by the next call after the get row, took ${deferred.join(", ")} (not in the get ratio).`,
    );
  }
  const problems = renderProblems(results);
  if (problems) console.log(`\n${problems}`);

  if (opts.json) {
    const doc = { date: new Date().toISOString(), chromium: version, pkg: opts.pkg, sizes: opts.sizes, only: opts.only, results };
    await writeFile(opts.json, `${JSON.stringify(doc, null, 2)}\n`);
    console.error(`== bench: raw results in ${opts.json}`);
  }
  if (results.some((r) => r.fatal)) process.exitCode = 1;
}

const opts = parseCommandLine();
if (!opts.skipPage) await main();
// Cache Storage against workbox-expiration, and OPFS against plain OPFS
// code, each in its own browser.
for (const [wanted, script] of [
  [opts.cache, "bench-cache.mjs"],
  [opts.opfs, "bench-opfs.mjs"],
  [opts.maint, "bench-maint.mjs"],
  [opts.kv, "bench-kv.mjs"],
]) {
  if (!wanted || process.exitCode) continue;
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", script)], { stdio: "inherit" });
  if (r.status !== 0) process.exitCode = 1;
}
