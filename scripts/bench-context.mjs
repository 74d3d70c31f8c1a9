// The browser context of the Cache Storage, OPFS and maintenance benchmarks:
// an off-the-record context (storage in memory), or with PROFILE=disk a
// fresh profile on disk, as a user's is. close() removes that profile.
import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function benchContext() {
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  const args = ["--no-sandbox", "--disable-gpu"];
  const onDisk = process.env.PROFILE === "disk";
  const profile = onDisk ? await mkdtemp(join(tmpdir(), "kvsweep-bench-")) : null;
  const browser = onDisk ? null : await chromium.launch({ executablePath, args });
  const context = onDisk
    ? await chromium.launchPersistentContext(profile, { executablePath, args })
    : await browser.newContext();
  return {
    context,
    version: (browser ?? context.browser())?.version() ?? "",
    where: onDisk ? "a profile on disk" : "an off-the-record context (storage in memory; PROFILE=disk for a profile on disk)",
    async close() {
      await context.close();
      await browser?.close();
      if (profile) await rm(profile, { recursive: true, force: true });
    },
  };
}
