// The package's TypeScript declarations accept what the README does, under
// `tsc --strict --exactOptionalPropertyTypes` (tests/types/usage.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));

test("a file calling every method as the README does compiles with tsc --strict", { timeout: 120_000 }, () => {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const args = [tsc, "--strict", "--exactOptionalPropertyTypes", "--noEmit", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
    "--lib", "es2022,esnext.disposable,dom", "--skipLibCheck", "false", join(root, "tests", "types", "usage.ts")];
  const run = spawnSync(process.execPath, args, { encoding: "utf8", cwd: root });
  assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
});

test("options the declarations accept as undefined, the runtime takes as left out (usage.ts's forwarded())", async () => {
  const { Sweeper, memoryStore } = await import("../../pkg/node.js");
  const sweeper = new Sweeper(memoryStore(), {
    policy: { maxAgeMs: undefined, maxEntries: undefined, groups: undefined },
    clock: undefined, batchSize: undefined, maxValueBytes: undefined,
    schedule: { periodMs: undefined, onRun: undefined, lockName: undefined },
  });
  await sweeper.put("k", 1, { namespace: undefined, ttlMs: undefined, refs: undefined, blobs: undefined, pinned: undefined });
  await sweeper.putMany([{ key: "j", value: 2, namespace: undefined, group: undefined }]);
  assert.equal(await sweeper.get("k", { namespace: undefined, includeExpired: undefined }), 1);
  assert.equal(await sweeper.delete("j", { namespace: undefined }), true);
  const keys = [];
  for await (const key of sweeper.keys({ namespace: undefined, prefix: undefined, limit: undefined })) keys.push(key);
  assert.deepEqual(keys, ["k"]);
  await sweeper.plan({ mode: undefined, signal: undefined });
  const report = await sweeper.run({ mode: undefined, signal: undefined, budgetMs: undefined, maxOps: undefined, leaseMs: undefined, onProgress: undefined });
  assert.equal(report.done, true);
  assert.equal((await sweeper.history({ namespace: undefined, limit: undefined })).length, 1);
  assert.equal((await sweeper.detail("k", { namespace: undefined, includeExpired: undefined })).value, 1);
  await sweeper.verify({ shard: undefined, repair: undefined });
  await sweeper.health({ maxBacklog: undefined });
  await sweeper.close();
});
