// The maintenance operations in headless Chromium (run by npm run bench, or
// alone): how long each takes on a store of MAINT_N entries (default
// 100,000), on IndexedDB and on the memory store, and what verify costs per
// MiB beside crypto.subtle.digest over the same bytes. Issue #12.
import { serve } from "./serve.mjs";
import { benchContext } from "./bench-context.mjs";

const N = Number(process.env.MAINT_N ?? 100_000);
const BLOBS = 20;
const BYTES = 1 << 20;

const server = await serve(0);
const { context, version, where, close } = await benchContext();
try {
  const page = await context.newPage();
  await page.goto(server.url);
  const r = await page.evaluate(
    async ([n, blobs, bytes]) => {
      const kv = await import("/pkg/index.js");
      const { benchMaint } = await import("/bench/maint-bench.js");
      return benchMaint(kv, n, blobs, bytes);
    },
    [N, BLOBS, BYTES],
  );
  const fmt = new Intl.NumberFormat("en");
  console.log(`\n## Maintenance operations — Chromium ${version}, ${where}, ${fmt.format(N)} entries of 200 characters in 10 namespaces\n`);
  console.log("| operation | store | entries it reads or touches | time |");
  console.log("| --- | --- | --- | --- |");
  for (const row of r.rows) console.log(`| ${row.op} | ${row.backend} | ${fmt.format(row.size)} | ${Math.round(row.ms)} ms |`);
  const v = r.verify;
  console.log(`\nverify(): ${BLOBS} blobs of ${BYTES >> 20} MiB on IndexedDB in ${Math.round(v.ms)} ms, ${(v.ms / v.mib).toFixed(1)} ms per MiB` +
    ` (reading and hashing in wasm); crypto.subtle.digest over the same bytes: ${(v.subtleMs / v.mib).toFixed(1)} ms per MiB.`);
} finally {
  await close();
  await server.close();
}
