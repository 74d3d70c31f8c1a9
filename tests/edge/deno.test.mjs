// Real Deno (npm `deno`) running the package: tests/edge/deno-scenario.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("Deno KV (in memory and in a file): the cleanup scenario, chunked values, one cleaner at a time", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kvsweep-deno-"));
  try {
    const { stdout, stderr, code } = await new Promise((resolve) => {
      execFile(
        "node_modules/.bin/deno",
        ["run", "--unstable-kv", "--unstable-cron", "--no-prompt", "--allow-read=.", `--allow-read=${dir}`, `--allow-write=${dir}`, "tests/edge/deno-scenario.mjs", dir],
        { timeout: 120_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } },
        (error, stdout, stderr) => resolve({ stdout, stderr, code: error?.code ?? 0 }),
      );
    });
    assert.equal(code, 0, `deno failed:\n${stderr}`);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.ok), ["native expiry", "memory", "file", "lease", "calls", "concurrent", "concurrent", "cron"]);
    console.log(`# Deno: ${stdout.trim().replace(/\n/g, " ")}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
