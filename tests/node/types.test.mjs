// The package's TypeScript declarations accept what the README does, under
// `tsc --strict` (tests/types/usage.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));

test("a file calling every method as the README does compiles with tsc --strict", { timeout: 120_000 }, () => {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const args = [tsc, "--strict", "--noEmit", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
    "--lib", "es2022,esnext.disposable,dom", "--skipLibCheck", "false", join(root, "tests", "types", "usage.ts")];
  const run = spawnSync(process.execPath, args, { encoding: "utf8", cwd: root });
  assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
});
