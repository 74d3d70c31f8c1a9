// A small static server for the demo: www/ at /, the built package at /pkg/.
// Listens on 127.0.0.1 only. PORT picks the port (0 = any free one).
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const mounts = [
  ["/pkg/", join(root, "pkg")],
  // Test helpers shared by Node and the browser tests (tests/e2e/).
  ["/tests/shared/", join(root, "tests", "shared")],
  // The benchmarks' page and worker code (npm run bench).
  ["/bench/", join(root, "bench")],
  // The demo's chart library (uPlot, an npm dev dependency): served from
  // node_modules, never from a CDN.
  ["/vendor/uplot/", join(root, "node_modules", "uplot", "dist")],
  ["/", join(root, "www")],
];
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".ts": "text/plain; charset=utf-8",
};

async function resolveFile(pathname) {
  for (const [prefix, dir] of mounts) {
    if (!pathname.startsWith(prefix)) continue;
    const rel = normalize(decodeURIComponent(pathname.slice(prefix.length))).replace(/^(\.\.[/\\])+/, "");
    let file = join(dir, rel);
    if (!file.startsWith(dir)) return null;
    try {
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      await stat(file);
      return file;
    } catch {
      return null;
    }
  }
  return null;
}

/** Starts the server; resolves to { url, close }. */
export async function serve(port = Number(process.env.PORT ?? 8080)) {
  let hits = 0;
  const server = createServer(async (req, res) => {
    const { pathname } = new URL(req.url, "http://127.0.0.1");
    // Responses for service-worker caching tests: each says how many came before it.
    if (pathname.startsWith("/tests/data/")) {
      hits += 1;
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" }).end(`${pathname} #${hits}`);
      return;
    }
    const file = await resolveFile(pathname);
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": types[extname(file)] ?? "application/octet-stream",
      "cache-control": "no-store",
      // Test service workers (tests/shared/) may control the whole origin.
      ...(pathname.startsWith("/tests/shared/") ? { "service-worker-allowed": "/" } : {}),
    });
    res.end(await readFile(file));
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", ok);
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, close: () => new Promise((ok) => server.close(ok)) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let server;
  try {
    server = await serve();
  } catch (e) {
    if (e.code !== "EADDRINUSE") throw e;
    server = await serve(0); // the default port is taken: any free one
  }
  console.log(`kvsweep demo: ${server.url}`);
}
