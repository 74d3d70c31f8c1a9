// OPFS in headless Chromium (run by npm run bench, or alone): kvsweep's
// openOpfs store against plain OPFS code writing and deleting the same
// files, on the main thread and in a dedicated worker, ratios from the same
// run (medians of rounds). Issue #11.
import { serve } from "./serve.mjs";
import { benchContext } from "./bench-context.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CASES = [
  [200, 64 * 1024],
  [20, 1024 * 1024],
  [5, 8 * 1024 * 1024],
];

const server = await serve(0);
const { context, version, where, close } = await benchContext();
try {
  const page = await context.newPage();
  await page.goto(server.url);
  console.log(`\n## OPFS: kvsweep's openOpfs against plain OPFS code — Chromium ${version}, ${where}, median of ${ROUNDS} rounds\n`);
  console.log("| where | files | plain write | kvsweep putBlob | ratio (plain time / kvsweep time) | plain removeEntry | kvsweep run deleting them | ratio |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  const ms = (v) => `${Math.round(v)} ms`;
  for (const where of ["main thread", "dedicated worker"]) {
    for (const [n, size] of CASES) {
      const r =
        where === "main thread"
          ? await page.evaluate(
              async ([n, size, rounds]) => {
                const kv = await import("/pkg/index.js");
                const { benchOpfs } = await import("/bench/opfs-bench.js");
                return benchOpfs(kv, n, size, rounds);
              },
              [n, size, ROUNDS],
            )
          : await page.evaluate(
              (name) =>
                new Promise((resolve) => {
                  const w = new Worker("/bench/opfs-worker.js", { type: "module", name });
                  w.onmessage = ({ data }) => (resolve(data), w.terminate());
                  w.onerror = (e) => resolve({ error: e.message });
                }),
              `${n},${size},${ROUNDS}`,
            );
      if (r.error) throw new Error(r.error);
      if (r.deleted !== n) {
        console.log(`WARNING: a run deleted ${r.deleted} of ${n} blobs`);
        process.exitCode = 1;
      }
      const kib = size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size >> 10} KiB`;
      console.log(`| ${where} | ${n} × ${kib} | ${ms(r.plainWrite)} | ${ms(r.write)} | ${r.writeRatio.toFixed(2)} | ${ms(r.plainRemove)} | ${ms(r.remove)} | ${r.removeRatio.toFixed(2)} |`);
    }
  }
} finally {
  await close();
  await server.close();
}
