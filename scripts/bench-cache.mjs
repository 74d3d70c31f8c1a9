// Cache Storage expiration in headless Chromium (run by npm run bench, or
// alone): kvsweep against workbox-expiration (what ExpirationPlugin runs),
// expiring 1,000 of 2,000 cached responses, with plain cache.delete code as
// the floor, all in one page run. Issue #11's target: >= 5x workbox.
import { build } from "esbuild";
import { serve } from "./serve.mjs";
import { benchContext } from "./bench-context.mjs";

const TOTAL = 2000;
const KEEP = 1000;
const ROUNDS = Number(process.env.ROUNDS ?? 5);

await build({
  entryPoints: ["bench/cache-page.js"],
  bundle: true,
  format: "esm",
  outfile: "tests/shared/.gen/cache-bench.js",
  external: ["/pkg/*"],
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "error",
});
const server = await serve(0);
const { context, version, where, close } = await benchContext();
try {
  const page = await context.newPage();
  await page.goto(server.url);
  await page.addScriptTag({ url: "/tests/shared/.gen/cache-bench.js", type: "module" });
  await page.waitForFunction(() => typeof window.benchCache === "function");
  const r = await page.evaluate(([t, k, n]) => window.benchCache(t, k, n), [TOTAL, KEEP, ROUNDS]);
  const ms = (v) => `${Math.round(v)} ms`;
  console.log(`\n## Cache Storage: expiring ${TOTAL - KEEP} of ${TOTAL} cached responses — Chromium ${version}, ${where}, median of ${ROUNDS} rounds\n`);
  console.log("| code | time | left | workbox-expiration time / this time |");
  console.log("| --- | --- | --- | --- |");
  console.log(`| workbox-expiration (ExpirationPlugin's) | ${ms(r.workbox)} | ${r.workboxLeft} | 1.00 |`);
  console.log(`| kvsweep run, by the store object that wrote the entries (target ≥ 5×) | ${ms(r.kvsweep)} | ${r.kvsweepLeft} | ${r.kvsweepRatio.toFixed(2)} (rounds: ${r.rounds.map((x) => (x.workbox / x.kvsweep).toFixed(1)).join(", ")}) |`);
  console.log(`| kvsweep run, store opened just before (its records read once) | ${ms(r.kvsweepCold)} | ${r.kvsweepColdLeft} | ${r.kvsweepColdRatio.toFixed(2)} (rounds: ${r.rounds.map((x) => (x.workbox / x.kvsweepCold).toFixed(1)).join(", ")}) |`);
  console.log(`| plain cache.delete loop | ${ms(r.loop)} | ${KEEP} | ${r.loopRatio.toFixed(2)} |`);
  console.log(`| plain Promise.all of cache.delete | ${ms(r.all)} | ${KEEP} | ${r.allRatio.toFixed(2)} |`);
  // What kvsweep adds to the cache.delete calls it cannot avoid: its listing,
  // plan, batches and lease (the median of the rounds' differences). The
  // first kvsweep row's store object wrote the entries itself, so its run
  // lists them from the copy it keeps (see pkg-template/idbkv.js).
  const over = r.rounds.map((x) => x.kvsweep - x.all).sort((a, b) => a - b)[Math.floor(r.rounds.length / 2)];
  console.log(`\nkvsweep's time above the Promise.all floor: ${ms(over)} (median of the rounds' differences)`);
  if (r.workboxLeft !== KEEP || r.kvsweepLeft !== KEEP || r.kvsweepColdLeft !== KEEP) {
    console.log(`\nWARNING: a cache kept ${r.workboxLeft} (workbox) / ${r.kvsweepLeft} (kvsweep) / ${r.kvsweepColdLeft} (kvsweep, opened before) responses, not ${KEEP}`);
    process.exitCode = 1;
  }
} finally {
  await close();
  await server.close();
}
