// The kvsweep demo: an offline-first notes app. Notes with image attachments
// (blobs shared between notes), drafts kept by a retention rule, and a cache of
// API responses with TTLs, in a store of your choice (memory, IndexedDB, OPFS).
// It uses only the package's public API, from /pkg/index.js. Plain DOM, no
// framework; the chart is uPlot (from npm, served at /vendor/uplot/). No
// network besides this page's own server.

const DB_NAME = "kvsweep-demo";
/**
 * Entries per putMany: one transaction each, with a yield to the page between
 * them. On IndexedDB a putMany of 500 blocks the page up to ~160 ms, of 250
 * ~60 ms, for the same throughput.
 */
const CHUNK = 250;
/** Pictures drawn per batch; each attachment is one of them with its own caption (distinct bytes). */
const PICTURES = 8;
/** Notes per image: every third note of each block of 30 shares one image. */
const NOTES_PER_IMAGE_BLOCK = 30;
const PLAN_ROWS = 200;
const NOTES_SHOWN = 6;
const MAX_SAMPLES = 300;
const MAX_EVENTS = 30;
const DELETE_NOTES = 100;

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en");

let kv; // the package module
let uPlot; // the chart library
/** The store in use: { kind, store, sweeper, token }. */
let current;
/** Stores opened so far, by kind: switching back finds the same data (memory too, while the page lives). */
const stores = new Map();
/** Per store kind: the chart's samples and the bytes runs freed. */
const perStore = new Map();
let busy = false;
let finished = 0; // user actions completed, exposed as body[data-actions] for tests
let refreshes = 0; // refreshes completed, body[data-refreshes]
let runController; // the AbortController of the run going, if any
let lastBatch = 0;
let chart;
let thumbUrls = [];

// ---------- errors ----------

function messageOf(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

function showError(err) {
  $("error-message").textContent = messageOf(err);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-message").textContent = "";
}

window.addEventListener("unhandledrejection", (e) => showError(e.reason));
window.addEventListener("error", (e) => {
  // A browser notice, not a failure: the chart's ResizeObserver resized it
  // within the same frame.
  if (/^ResizeObserver loop/.test(e.message ?? "")) return;
  showError(e.error ?? e.message);
});

// ---------- helpers ----------

function setStatus(text, state = "ok") {
  const node = $("status");
  node.textContent = text;
  node.dataset.state = state;
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return "–";
  if (Math.abs(n) < 1000) return `${fmt.format(n)} B`;
  if (Math.abs(n) < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (Math.abs(n) < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString("en-GB");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

const nsLabel = (ns) => (ns === undefined ? "—" : ns === "" ? "(default)" : ns);
const pad = (n, width = 6) => String(n).padStart(width, "0");
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Sums a `{ reason: { count, bytes } }` tally. */
function total(tally) {
  let count = 0;
  let bytes = 0;
  for (const t of Object.values(tally ?? {})) {
    count += t.count;
    bytes += t.bytes;
  }
  return { count, bytes };
}

function describeTally(tally) {
  const parts = Object.entries(tally ?? {}).map(([reason, t]) => `${reason} ${fmt.format(t.count)}`);
  return parts.length ? parts.join(", ") : "nothing";
}

function setBusy(on) {
  busy = on;
  document.body.dataset.busy = String(on);
  for (const b of document.querySelectorAll("[data-busy-lock]")) b.disabled = on || !current;
}

/**
 * Runs one user action: one at a time, errors shown in the page. What `fn`
 * resolves with as `after` (a plan refreshing after a run, seconds at
 * 100,000 entries) goes on with the buttons free; the action counts as
 * finished (body's data-actions) once it has.
 */
async function action(fn) {
  if (busy || !current) return;
  const mine = current;
  setBusy(true);
  clearError();
  let freed = false;
  try {
    const out = await fn();
    if (out?.after) {
      setBusy(false);
      freed = true;
      try {
        await out.after;
      } catch (err) {
        // Another action began meanwhile, or the store changed: what this
        // one went on to do is stale, and the other says how it went.
        if (busy || current !== mine) return;
        throw err;
      }
    }
  } catch (err) {
    // The buttons are held again for what follows (a reopen), one action at a time.
    if (freed) {
      setBusy(true);
      freed = false;
    }
    showError(err);
    // Another tab deleted the store's database: open it again (empty), so
    // that the next action works and the numbers are the store's.
    if (current && /another tab or worker deleted the database/.test(messageOf(err))) {
      stores.delete(current.kind);
      // A new, empty store: what this page freed and charted was the old one's.
      perStore.delete(current.kind);
      try {
        await useStore(current.kind);
        await refresh("reopened");
        showError(`${messageOf(err)} (the page has opened the store again)`);
      } catch (again) {
        showError(again);
      }
    }
  } finally {
    if (!freed) setBusy(false);
    document.body.dataset.actions = String(++finished);
  }
}

/** A small deterministic random generator (mulberry32), so generated data can be checked. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stateOf(kind) {
  if (!perStore.has(kind)) perStore.set(kind, { samples: [], freedBytes: 0, freedCount: 0, seen: null });
  return perStore.get(kind);
}

// ---------- the policy form ----------

/** A number field: undefined when empty; seconds become milliseconds with `scale`. */
function numberField(id, label, scale = 1) {
  const input = $(id);
  if (input.validity.badInput) throw new Error(`${label} must be a number`);
  if (input.value.trim() === "") return undefined;
  const n = Number(input.value);
  // Counts go through as typed (1.5, -1), so the page shows the library's
  // own error; seconds become whole milliseconds, none lost to rounding.
  if (scale === 1) return n;
  // Checked here, in the seconds typed: the library would name milliseconds.
  if (n < 0) throw new Error(`${label} must be 0 or more seconds, got ${input.value}`);
  const ms = Math.round(n * scale);
  if (ms === 0 && n !== 0) throw new Error(`${label} must be 0 or at least ${1 / scale} s, got ${input.value}`);
  if (!Number.isSafeInteger(ms)) throw new Error(`${label} must be at most ${Math.floor(Number.MAX_SAFE_INTEGER / scale)} seconds, got ${input.value}`);
  return ms;
}

/**
 * The settings in use: the form's as last applied (Apply, or the page's
 * start). Switching store, Reset and Generate use these, not fields edited
 * since, which wait for Apply.
 */
let applied;

/** The policy, the schedule and the generator's settings, as the form says. */
function readSettings() {
  const policy = {};
  const grace = numberField("pol-grace", "Orphan grace", 1000);
  if (grace !== undefined) policy.orphanGraceMs = grace;
  const maxEntries = numberField("pol-max-entries", "Max entries");
  if (maxEntries !== undefined) policy.maxEntries = maxEntries;
  const maxBytes = numberField("pol-max-bytes", "Max bytes");
  if (maxBytes !== undefined) policy.maxBytes = maxBytes;
  const keepDrafts = numberField("pol-keep-drafts", "Drafts to keep");
  if (keepDrafts !== undefined) policy.groups = { drafts: { keepLast: keepDrafts } };
  const maxAge = numberField("pol-max-age", "Max age of API responses", 1000);
  if (maxAge !== undefined) policy.namespaces = { api: { maxAgeMs: maxAge } };

  let schedule;
  if ($("sched-on").checked) {
    schedule = { debounceMs: 300, maxWaitMs: 3000 };
    const period = numberField("sched-period", "Period", 1000);
    if (period !== undefined) schedule.periodMs = period;
    const writes = numberField("sched-writes", "Full run after writes");
    if (writes !== undefined) schedule.autoAfterWrites = writes;
  }

  const ttlMs = numberField("pol-ttl", "API response TTL", 1000);
  const pinEvery = numberField("pol-pin-every", "Pin every n-th note") ?? 0;
  if (!Number.isSafeInteger(pinEvery) || pinEvery < 0) throw new Error("Pin every n-th note must be a whole number, 0 or more");
  return { policy, schedule, ttlMs, pinEvery };
}

// ---------- stores and sweepers ----------

async function openStore(kind) {
  if (stores.has(kind)) return stores.get(kind);
  let store;
  if (kind === "memory") store = kv.memoryStore();
  else if (kind === "indexeddb") store = await kv.openIndexedDb(DB_NAME);
  else if (kind === "opfs") store = await kv.openOpfs(DB_NAME);
  else throw new Error(`unknown store ${kind}`);
  stores.set(kind, store);
  return store;
}

/** A Sweeper over `store` with the form's policy; its background runs are reported to the page. */
function makeSweeper(kind, store, settings) {
  const token = {};
  const options = { policy: settings.policy };
  if (settings.schedule) options.schedule = { ...settings.schedule, onRun: (e) => onBackgroundRun(kind, token, e) };
  return { kind, store, sweeper: new kv.Sweeper(store, options), token, scheduled: Boolean(settings.schedule) };
}

async function useStore(kind) {
  const settings = (applied ??= readSettings());
  const store = await openStore(kind);
  const next = makeSweeper(kind, store, settings);
  if (current) current.sweeper.close();
  current = next;
  $("store-select").value = kind;
  $("store-name").textContent = `· ${store.kind}${kind === "memory" ? "" : ` “${DB_NAME}”`}`;
  document.body.dataset.store = kind;
  const url = new URL(location.href);
  url.searchParams.set("store", kind);
  history.replaceState(null, "", url);
  $("bg-events").replaceChildren();
  $("report").hidden = true;
  $("run-progress").value = 0;
  $("run-progress-text").textContent = "Idle";
  drawChart();
}

async function switchStore() {
  await action(async () => {
    const kind = $("store-select").value;
    try {
      await useStore(kind);
    } catch (err) {
      $("store-select").value = current.kind;
      throw err;
    }
    setStatus(`Using ${kind}`);
    await refresh("open");
  });
}

async function applyPolicy(ev) {
  ev.preventDefault();
  await action(async () => {
    // The new Sweeper is made first: a policy the library refuses leaves the old one working.
    const settings = readSettings();
    const next = makeSweeper(current.kind, current.store, settings);
    current.sweeper.close();
    current = next;
    applied = settings;
    // The old Sweeper's background run stops with it; its end is not shown
    // (events of a replaced Sweeper are dropped), so say here how it ended.
    for (const started of $("bg-events").querySelectorAll('li[data-type="start"]')) {
      const mode = started.dataset.mode;
      started.replaceWith(el("li", { "data-type": "end", "data-mode": mode, "data-done": "false" }, `${fmtTime(Date.now())} ${mode} run stopped: the policy changed`));
    }
    $("policy-result").textContent = `Applied at ${fmtTime(Date.now())}.`;
    setStatus("Policy applied");
    await refresh("policy");
  });
}

// ---------- generated data ----------

const WORDS = ("groceries trip ideas meeting recipe garden budget reading list book notes sketch plan errands " +
  "weekend project photos receipt travel packing birthday gift workout journal summary todo").split(" ");

function sentence(rnd, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rnd() * WORDS.length)]);
  return out.join(" ");
}

/** A small PNG drawn on a canvas: one of a few pictures per batch. */
async function drawImage(batch, index) {
  // (batch is a Date.now(): scaled as a whole it would lose the index to rounding)
  const rnd = random((batch % 2147483647) * 31 + index * 7919);
  const canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(48, 48) : Object.assign(document.createElement("canvas"), { width: 48, height: 48 });
  const ctx = canvas.getContext("2d");
  const hue = Math.floor(rnd() * 360);
  const g = ctx.createLinearGradient(0, 0, 48, 48);
  g.addColorStop(0, `hsl(${hue} 70% 60%)`);
  g.addColorStop(1, `hsl(${(hue + 60) % 360} 70% 40%)`);
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, 48, 48);
  for (let i = 0; i < 4; i++) {
    ctx.fillStyle = `hsl(${Math.floor(rnd() * 360)} 80% ${50 + Math.floor(rnd() * 30)}% / 0.8)`;
    ctx.beginPath();
    ctx.arc(rnd() * 48, rnd() * 48, 4 + rnd() * 10, 0, Math.PI * 2);
    ctx.fill();
  }
  const blob = await (canvas.convertToBlob ? canvas.convertToBlob({ type: "image/png" }) : new Promise((resolve) => canvas.toBlob(resolve, "image/png")));
  return new Uint8Array(await blob.arrayBuffer());
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The PNG `png` with a tEXt chunk (a caption) before its IEND chunk: a
 * distinct image file for each caption. Canvas encoding takes ~13 ms an
 * image in headless Chromium, so a batch draws a few pictures and captions
 * them for each attachment.
 */
function captioned(png, caption) {
  const text = new TextEncoder().encode(`Comment\0${caption}`);
  const chunk = new Uint8Array(12 + text.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, text.length);
  chunk.set([0x74, 0x45, 0x58, 0x74], 4); // "tEXt"
  chunk.set(text, 8);
  view.setUint32(8 + text.length, crc32(chunk.subarray(4, 8 + text.length)));
  const iend = png.length - 12; // IEND: length 0, type, CRC
  const out = new Uint8Array(png.length + chunk.length);
  out.set(png.subarray(0, iend));
  out.set(chunk, iend);
  out.set(png.subarray(iend), iend + chunk.length);
  return out;
}

/** A batch id that sorts after every earlier one, so "the oldest notes" come first in key order. */
function nextBatch() {
  lastBatch = Math.max(Date.now(), lastBatch + 1);
  return lastBatch;
}

/**
 * Writes `n` entries: ⌊n/2⌋ API responses in namespace "api", every other one
 * already past its TTL; the rest in namespace "notes", of which ⌊2/5⌋ are
 * drafts in group "drafts" and the others notes; note k has an image when
 * k % 3 == 0, image ⌊k/30⌋ (shared by the notes of its block), and is pinned
 * when k % pinEvery == 0. The test (tests/e2e/demo.test.mjs) counts on this.
 */
async function generate(n, settings, onProgress) {
  const { sweeper } = current;
  const batch = nextBatch();
  const tag = batch.toString(36);
  const apiCount = Math.floor(n / 2);
  const notesNs = n - apiCount;
  const draftCount = Math.floor((notesNs * 2) / 5);
  const noteCount = notesNs - draftCount;
  const now = Date.now();
  const rnd = random(batch);
  let written = 0;
  // Each image's bytes by id, to put again (see write).
  const pngs = new Map();
  const write = async (items) => {
    for (let tries = 1; ; tries++) {
      try {
        await sweeper.putMany(items);
        break;
      } catch (err) {
        // With an orphan grace of 0 a background run may delete an image put
        // for this chunk before the chunk references it, as it may in any
        // app: put the chunk's images again and write it again.
        if (tries === 3 || !/ is not in the store/.test(messageOf(err))) throw err;
        for (const id of new Set(items.flatMap((i) => i.blobs ?? []))) await sweeper.putBlob(pngs.get(id));
      }
    }
    written += items.length;
    onProgress(written, n);
    await tick(); // let the page paint between transactions
  };

  // API responses: half stale (fetched earlier, past their TTL), half fresh.
  for (let c = 0; c < apiCount; c += CHUNK) {
    const items = [];
    for (let a = c; a < Math.min(apiCount, c + CHUNK); a++) {
      const url = `GET /api/feed/${tag}/${pad(a)}`;
      const value = {
        status: 200,
        headers: { "content-type": "application/json" },
        body: { page: a, items: [{ id: a * 3, title: sentence(rnd, 3) }, { id: a * 3 + 1, title: sentence(rnd, 4) }] },
      };
      const item = { key: url, value, namespace: "api" };
      if (a % 2 === 0) item.expiresAt = now - 60_000;
      else if (settings.ttlMs !== undefined) item.ttlMs = settings.ttlMs;
      items.push(item);
    }
    await write(items);
  }
  // Drafts: the retention rule keeps the newest few.
  for (let c = 0; c < draftCount; c += CHUNK) {
    const items = [];
    for (let d = c; d < Math.min(draftCount, c + CHUNK); d++) {
      items.push({
        key: `draft/${tag}-${pad(d)}`,
        value: { title: sentence(rnd, 2), body: sentence(rnd, 12) },
        namespace: "notes",
        group: "drafts",
      });
    }
    await write(items);
  }
  // Notes, some with an image; each chunk's images are put just before the chunk that references them.
  const pictures = [];
  const images = [];
  let imageBytes = 0;
  for (let c = 0; c < noteCount; c += CHUNK) {
    const items = [];
    for (let k = c; k < Math.min(noteCount, c + CHUNK); k++) {
      const item = {
        key: `note/${tag}-${pad(k)}`,
        value: { title: `${sentence(rnd, 2)} #${k}`, body: sentence(rnd, 16), tags: new Set([WORDS[k % WORDS.length]]) },
        namespace: "notes",
      };
      if (k % 3 === 0) {
        const m = Math.floor(k / NOTES_PER_IMAGE_BLOCK);
        if (images[m] === undefined) {
          const p = m % PICTURES;
          pictures[p] ??= await drawImage(batch, p);
          const png = captioned(pictures[p], `attachment ${m} of batch ${tag}`);
          imageBytes += png.length;
          images[m] = await sweeper.putBlob(png);
          pngs.set(images[m], png);
        }
        item.blobs = [images[m]];
      }
      if (settings.pinEvery > 0 && k % settings.pinEvery === 0) item.pinned = true;
      items.push(item);
    }
    await write(items);
  }
  return { entries: written, images: images.length, imageBytes, api: apiCount, drafts: draftCount, notes: noteCount };
}

async function doGenerate(ev) {
  ev.preventDefault();
  await action(async () => {
    const input = $("gen-count");
    const n = Number(input.value);
    if (!Number.isSafeInteger(n) || n < 1 || n > 200_000) throw new Error("Entries to generate must be a whole number from 1 to 200,000");
    const out = $("gen-result");
    // A failed attempt leaves no earlier one's result beside its error.
    out.textContent = "";
    delete out.dataset.added;
    const settings = applied;
    const t0 = performance.now();
    let wrote = 0;
    const made = await generate(n, settings, (done, of) => {
      wrote = done;
      out.textContent = `Writing… ${fmt.format(done)} / ${fmt.format(of)}`;
    }).catch((err) => {
      out.textContent = `Failed after writing ${fmt.format(wrote)} of ${fmt.format(n)} entries.`;
      setStatus("Generate failed", "error");
      throw err;
    });
    const ms = Math.round(performance.now() - t0);
    out.textContent =
      `Wrote ${fmt.format(made.entries)} entries (${fmt.format(made.api)} API responses, ${fmt.format(made.notes)} notes, ` +
      `${fmt.format(made.drafts)} drafts) and ${fmt.format(made.images)} ${made.images === 1 ? "image" : "images"} (${fmtBytes(made.imageBytes)}) in ${fmt.format(ms)} ms.`;
    out.dataset.added = made.entries;
    out.dataset.images = made.images;
    out.dataset.ms = ms;
    setStatus(`Generated ${fmt.format(made.entries)} entries`);
    await refresh("generate");
  });
}

// ---------- notes ----------

async function deleteOldestNotes() {
  await action(async () => {
    const { sweeper } = current;
    const keys = [];
    for await (const key of sweeper.keys({ namespace: "notes", prefix: "note/", limit: DELETE_NOTES })) keys.push(key);
    let deleted = 0;
    for (const key of keys) {
      if (await sweeper.delete(key, { namespace: "notes" })) deleted++;
      if (deleted % 20 === 0) $("delete-result").textContent = `Deleting… ${deleted} / ${keys.length}`;
    }
    $("delete-result").textContent = keys.length ? `Deleted ${deleted} notes (${keys[0]} … ${keys.at(-1)}).` : "No notes to delete.";
    $("delete-result").dataset.deleted = deleted;
    setStatus(`Deleted ${deleted} notes`);
    await refresh("delete notes");
  });
}

async function togglePin(key) {
  await action(async () => {
    const { sweeper } = current;
    const d = await sweeper.detail(key, { namespace: "notes" });
    if (!d) throw new Error(`${key} is gone`);
    // Rewriting an entry keeps its createdAt; everything else is as it was but the pin.
    const options = { namespace: "notes", pinned: !d.pinned, locked: d.locked, dependent: d.dependent, refs: d.refs, blobs: d.blobs };
    if (d.group !== undefined) options.group = d.group;
    if (d.expiresAt !== undefined) options.expiresAt = d.expiresAt;
    await sweeper.put(key, d.value, options);
    setStatus(`${d.pinned ? "Unpinned" : "Pinned"} ${key}`);
    await refresh(d.pinned ? "unpin" : "pin");
  });
}

async function deleteNote(key) {
  await action(async () => {
    const gone = await current.sweeper.delete(key, { namespace: "notes" });
    setStatus(gone ? `Deleted ${key}` : `${key} was already gone`);
    await refresh("delete note");
  });
}

async function renderNotes(s) {
  let recent;
  try {
    recent = await s.sweeper.history({ namespace: "notes", limit: NOTES_SHOWN });
  } catch (err) {
    // history() rejects for a namespace never written to (a fresh store), rather than listing nothing.
    if (!/no namespace "notes"/.test(messageOf(err))) throw err;
    recent = [];
  }
  const details = await Promise.all(recent.map((r) => s.sweeper.detail(r.key, { namespace: "notes" })));
  const blobs = await Promise.all(recent.map((r) => (r.blobs.length ? s.sweeper.getBlob(r.blobs[0]) : undefined)));
  if (s !== current) return;
  for (const url of thumbUrls) URL.revokeObjectURL(url);
  thumbUrls = [];
  const items = recent.map((r, i) => {
    const value = details[i]?.value;
    let thumb = el("span", { class: "thumb empty" }, r.group === "drafts" ? "draft" : "");
    if (blobs[i]) {
      const url = URL.createObjectURL(new Blob([blobs[i]], { type: "image/png" }));
      thumbUrls.push(url);
      thumb = el("img", { class: "thumb", src: url, alt: "attachment", title: `${r.blobs[0].slice(0, 12)}… shared by notes of its block` });
    }
    const pin = el("button", { type: "button", class: "small-btn", "data-busy-lock": "" }, r.pinned ? "Unpin" : "Pin");
    pin.addEventListener("click", () => togglePin(r.key));
    const del = el("button", { type: "button", class: "small-btn", "data-busy-lock": "" }, "Delete");
    del.addEventListener("click", () => deleteNote(r.key));
    return el(
      "li",
      { "data-key": r.key, "data-pinned": String(r.pinned) },
      thumb,
      el(
        "div",
        { class: "note-text" },
        el("strong", {}, r.pinned ? "★ " : "", value?.title ?? r.key),
        el("span", { class: "muted small key" }, `${r.key} · ${fmtBytes(r.size)}${r.group ? ` · ${r.group}` : ""}`),
      ),
      pin,
      del,
    );
  });
  if (items.length === 0) items.push(el("li", { class: "muted small" }, "No notes yet: generate some."));
  $("notes-list").replaceChildren(...items);
  for (const b of $("notes-list").querySelectorAll("button")) b.disabled = busy;
}

// ---------- refresh: plan, stats, chart, health ----------

let refreshChain = Promise.resolve();

/** Plans again and redraws everything; refreshes run one after another. */
function refresh(label) {
  const p = refreshChain.then(() => doRefresh(label));
  refreshChain = p.catch(() => {});
  return p;
}

async function doRefresh(label) {
  const s = current;
  let plan;
  try {
    plan = await s.sweeper.plan({ mode: "full" });
  } catch (err) {
    if (s !== current) return; // that Sweeper was replaced (and closed) meanwhile
    throw err;
  }
  if (s !== current) return;
  renderStats(plan);
  renderPlan(plan);
  addSample(s.kind, plan);
  try {
    await renderHealth(s);
    if (s !== current) return;
    await renderNotes(s);
  } catch (err) {
    if (s !== current) return; // replaced (and closed) meanwhile
    throw err;
  }
  document.body.dataset.refreshes = String(++refreshes);
  document.body.dataset.lastRefresh = label;
}

function renderStats(plan) {
  const { summary, actions } = plan;
  const bytes = total(summary.deleted).bytes;
  const st = stateOf(current.kind);
  $("stat-entries").textContent = fmt.format(summary.scanned);
  $("stat-live").textContent = fmt.format(summary.reachable);
  $("stat-blobs").textContent = fmt.format(summary.blobs);
  $("stat-garbage").textContent = fmt.format(actions.length);
  $("stat-bytes").textContent = fmtBytes(bytes);
  $("stat-freed").textContent = fmtBytes(st.freedBytes);
  Object.assign($("stats").dataset, {
    entries: summary.scanned,
    live: summary.reachable,
    blobs: summary.blobs,
    garbage: actions.length,
    bytes,
    freed: st.freedBytes,
  });
}

function reasonBadge(reason) {
  return el("span", { class: `badge reason-${reason}` }, reason);
}

function renderPlan(plan) {
  const { actions, summary } = plan;
  const sum = total(summary.deleted);
  const at = fmtTime(summary.now);
  const box = $("plan-summary");
  box.dataset.actions = actions.length;
  box.classList.remove("muted");
  box.textContent =
    actions.length === 0
      ? `Nothing to delete (${at}). Scanned ${fmt.format(summary.scanned)} entries and ${fmt.format(summary.blobs)} blobs.`
      : `${fmt.format(actions.length)} to delete, ${fmtBytes(sum.bytes)} (${at}): ${describeTally(summary.deleted)}. ` +
        `Scanned ${fmt.format(summary.scanned)} entries (${fmt.format(summary.reachable)} live) and ${fmt.format(summary.blobs)} blobs.`;
  if (summary.youngBlobs > 0) box.textContent += ` ${fmt.format(summary.youngBlobs)} unused blobs kept in their grace period.`;
  if (summary.zombies?.length) box.textContent += ` Zombie namespaces: ${summary.zombies.join(", ")}.`;
  if (summary.corrupt?.length) box.textContent += ` ${summary.corrupt.length} undecodable entries kept.`;

  $("plan-totals-rows").replaceChildren(
    ...Object.entries(summary.deleted ?? {}).map(([reason, t]) =>
      el(
        "tr",
        { "data-reason": reason, "data-count": t.count, "data-bytes": t.bytes },
        el("td", {}, reasonBadge(reason)),
        el("td", { class: "num" }, fmt.format(t.count)),
        el("td", { class: "num" }, fmtBytes(t.bytes)),
      ),
    ),
  );
  $("plan-total-count").textContent = fmt.format(sum.count);
  $("plan-total-bytes").textContent = fmtBytes(sum.bytes);
  Object.assign($("plan-totals").dataset, { count: sum.count, bytes: sum.bytes });

  const rows = actions.slice(0, PLAN_ROWS).map((a) =>
    el(
      "tr",
      { "data-reason": a.reason, "data-kind": a.kind },
      el("td", {}, a.kind),
      el("td", {}, nsLabel(a.namespace)),
      el("td", { class: "key", title: a.key ?? a.id }, a.key ?? a.id),
      el("td", {}, reasonBadge(a.reason)),
      el("td", { class: "num" }, fmt.format(a.bytes)),
    ),
  );
  if (actions.length > PLAN_ROWS) {
    rows.push(el("tr", { class: "more" }, el("td", { colSpan: 5, class: "muted" }, `… and ${fmt.format(actions.length - PLAN_ROWS)} more`)));
  }
  if (actions.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "Nothing is garbage.")));
  $("plan-rows").replaceChildren(...rows);
}

async function renderHealth(s) {
  const health = await s.sweeper.health();
  if (s !== current) return;
  const badge = $("health-status");
  badge.textContent = health.status;
  badge.className = `badge health-${health.status}`;
  badge.dataset.status = health.status;
  $("health-reasons").replaceChildren(
    ...(health.reasons.length ? health.reasons : [`last success ${health.lastSuccessAt ? fmtTime(health.lastSuccessAt) : "never"}`]).map((r) => el("li", {}, r)),
  );
  const rows = [...health.runs].reverse().map((r) =>
    el(
      "tr",
      { "data-mode": r.mode, "data-deleted": r.deleted, "data-done": String(r.done) },
      el("td", {}, fmtTime(r.at)),
      el("td", {}, r.mode),
      el("td", {}, r.failed ? "failed" : r.done ? "done" : "stopped"),
      el("td", { class: "num" }, fmt.format(r.deleted)),
      el("td", { class: "num" }, fmtBytes(r.bytes)),
      el("td", { class: "num" }, fmt.format(r.durationMs)),
    ),
  );
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 6, class: "muted" }, "No run logged yet.")));
  $("history-rows").replaceChildren(...rows);
  $("history-table").dataset.runs = health.runs.length;
}

function renderSchedulerStats() {
  if (!current) return;
  const node = $("sched-stats");
  let st;
  try {
    st = current.sweeper.stats();
  } catch (err) {
    node.textContent = messageOf(err);
    return;
  }
  const next = st.nextRunAt ? `next run in ${Math.max(0, Math.round((st.nextRunAt - Date.now()) / 1000))} s` : "no run scheduled";
  const last = st.lastRun ? ` · last: ${st.lastRun.mode} ${st.lastRun.outcome}, ${fmt.format(st.lastRun.deleted)} deleted` : "";
  node.textContent =
    `Scheduler: ${st.state}${st.pending ? ` (${st.pending} pending)` : ""} · ${next} · ${st.runs} ${st.runs === 1 ? "run" : "runs"}, ` +
    `${st.skipped} skipped, ${st.failures} failed${last}`;
  Object.assign(node.dataset, { state: st.state, runs: st.runs, failures: st.failures });
}

// ---------- run and cancel ----------

/**
 * The report of a run that went on from one that stopped early counts both
 * (RunReport.resumed); `carried` is what the earlier one deleted, so what
 * this run deleted itself is the difference. Freed counts the earlier one
 * too where the page did not see it end (a Sweeper it replaced meanwhile).
 */
function ownDeletions(kind, report) {
  const st = stateOf(kind);
  const t = total(report.deleted);
  const carried = report.resumed ? report.carried : { count: 0, bytes: 0 };
  const own = { count: t.count - carried.count, bytes: t.bytes - carried.bytes };
  const seen = (report.resumed && st.seen?.[report.mode]) || { count: 0, bytes: 0 };
  st.seen = { ...st.seen, [report.mode]: report.done ? null : t };
  st.freedBytes += own.bytes + Math.max(0, carried.bytes - seen.bytes);
  st.freedCount += own.count + Math.max(0, carried.count - seen.count);
  return own;
}

function showProgress(p) {
  const bar = $("run-progress");
  bar.max = Math.max(1, p.total);
  bar.value = Math.min(p.processed, p.total);
  Object.assign(bar.dataset, { processed: p.processed, total: p.total, deleted: p.deleted, phase: p.phase });
  $("run-progress-text").textContent = `${p.phase}: ${fmt.format(p.processed)} / ${fmt.format(p.total)} · ${fmt.format(p.deleted)} deleted`;
}

function renderReport(report, own) {
  const t = total(report.deleted);
  const box = $("report");
  box.hidden = false;
  Object.assign(box.dataset, {
    deleted: t.count,
    own: own.count,
    done: String(report.done),
    stopped: report.stopped ?? "",
    resumed: String(report.resumed),
  });
  const state = report.done ? "complete" : `stopped (${report.stopped ?? "incomplete"}): the next run goes on from there`;
  const resumed = report.resumed ? ` It went on from a run that stopped early; the counts include that run's (${fmt.format(t.count - own.count)}).` : "";
  $("report-summary").textContent =
    `${report.mode} run: deleted ${fmt.format(own.count)} (${fmtBytes(own.bytes)}) in ${fmt.format(report.durationMs)} ms, ${state}.${resumed} ` +
    `Scanned ${fmt.format(report.scanned)} entries, ${fmt.format(report.reachable)} live; ` +
    `${fmt.format(report.kept)} planned deletions spared (written again since the plan); ${fmt.format(report.errors.length)} errors.`;
  const rows = Object.entries(report.deleted).map(([reason, tally]) =>
    el(
      "tr",
      { "data-reason": reason, "data-count": tally.count },
      el("td", {}, reasonBadge(reason)),
      el("td", { class: "num" }, fmt.format(tally.count)),
      el("td", { class: "num" }, fmtBytes(tally.bytes)),
    ),
  );
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 3, class: "muted" }, "Nothing was garbage.")));
  $("report-rows").replaceChildren(...rows);
  $("report-deleted-head").textContent = report.resumed ? "Deleted (both runs)" : "Deleted";
  $("report-errors").replaceChildren(
    ...report.errors.map((e) => el("li", {}, `${e.kind} ${e.namespace ? `${nsLabel(e.namespace)}/` : ""}${e.key}: ${e.message}`)),
  );
}

async function doRun() {
  await action(async () => {
    const { kind, sweeper } = current;
    const mode = $("run-mode").value;
    const bar = $("run-progress");
    bar.value = 0;
    for (const k of ["processed", "total", "deleted", "phase"]) delete bar.dataset[k];
    $("run-progress-text").textContent = "Planning…";
    runController = new AbortController();
    $("cancel-button").disabled = false;
    let updates = 0;
    let report;
    try {
      report = await sweeper.run({
        mode,
        signal: runController.signal,
        onProgress: (p) => {
          updates++;
          showProgress(p);
        },
      });
    } finally {
      runController = undefined;
      $("cancel-button").disabled = true;
    }
    const own = ownDeletions(kind, report);
    if (report.done) bar.value = bar.max; // a run with nothing to delete reports no batch
    bar.dataset.updates = updates;
    $("run-progress-text").textContent = report.done
      ? `Finished · ${fmt.format(own.count)} deleted`
      : `Cancelled after ${fmt.format(own.count)} deletions · ${report.stopped}`;
    renderReport(report, own);
    setStatus(report.done ? `Cleanup done: ${fmt.format(own.count)} deleted` : `Cleanup stopped: ${fmt.format(own.count)} deleted`);
    // The buttons are free while the page plans again.
    return { after: refresh("run") };
  });
}

function cancelRun() {
  if (!runController) return;
  runController.abort();
  $("cancel-button").disabled = true;
  $("run-progress-text").textContent += " · cancelling after this batch…";
}

// ---------- background runs ----------

function onBackgroundRun(kind, token, e) {
  const mine = current && current.token === token;
  const list = $("bg-events");
  if (!mine) return; // a Sweeper the page has replaced
  const time = fmtTime(e.at);
  if (e.type === "start") {
    list.prepend(el("li", { "data-type": "start", "data-mode": e.mode }, `${time} ${e.mode} run started…`));
  } else if (e.type === "end") {
    const own = ownDeletions(kind, e.report);
    const r = e.report;
    const outcome = r.done ? "done" : `stopped (${r.stopped})`;
    const started = list.querySelector('li[data-type="start"]');
    const item = el(
      "li",
      { "data-type": "end", "data-mode": e.mode, "data-deleted": own.count, "data-done": String(r.done) },
      `${time} ${e.mode} run ${outcome}: deleted ${fmt.format(own.count)} (${fmtBytes(own.bytes)}; ${describeTally(r.deleted)}) in ${fmt.format(r.durationMs)} ms`,
    );
    if (started) started.replaceWith(item);
    else list.prepend(item);
    refresh(`background ${e.mode}`).catch(showError);
  } else {
    const started = list.querySelector('li[data-type="start"]');
    const item = el("li", { "data-type": "error", "data-mode": e.mode, class: "failed" }, `${time} ${e.mode} run failed: ${messageOf(e.error)}`);
    if (started) started.replaceWith(item);
    else list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  renderSchedulerStats();
}

function requestRun() {
  if (!current) return;
  // Without a schedule nothing on the page hears of the run (onRun is the
  // scheduler's): say so rather than clean unseen.
  if (!current.scheduled) {
    showError("Background cleanup is off: turn it on and Apply, or use Run");
    return;
  }
  try {
    current.sweeper.request("full");
    setStatus("Background run requested");
    renderSchedulerStats();
  } catch (err) {
    showError(err);
  }
}

// ---------- chart (uPlot) ----------

function addSample(kind, plan) {
  const st = stateOf(kind);
  const last = st.samples.at(-1);
  // uPlot's x values must increase: seconds, with ms precision.
  const t = Math.max(Date.now() / 1000, last ? last.t + 0.001 : 0);
  st.samples.push({
    t,
    entries: plan.summary.scanned,
    live: plan.summary.reachable,
    reclaimable: total(plan.summary.deleted).bytes,
    freed: st.freedBytes,
  });
  if (st.samples.length > MAX_SAMPLES) st.samples.splice(0, st.samples.length - MAX_SAMPLES);
  drawChart();
}

function chartData(samples) {
  return [
    samples.map((s) => s.t),
    samples.map((s) => s.entries),
    samples.map((s) => s.live),
    samples.map((s) => s.reclaimable),
    samples.map((s) => s.freed),
  ];
}

function chartSize() {
  return { width: Math.max(240, $("chart").clientWidth), height: 220 };
}

function drawChart() {
  if (!uPlot || !current) return;
  const samples = stateOf(current.kind).samples;
  const box = $("chart");
  box.dataset.points = samples.length;
  if (chart) {
    chart.setData(chartData(samples));
    return;
  }
  const count = (u, v) => (v == null ? "–" : fmt.format(v));
  const bytes = (u, v) => (v == null ? "–" : fmtBytes(v));
  chart = new uPlot(
    {
      ...chartSize(),
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },
      scales: {
        x: { time: true },
        n: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] },
        b: { range: (u, min, max) => [0, Math.max(1000, max * 1.1)] },
      },
      series: [
        { value: (u, v) => (v == null ? "–" : fmtTime(v * 1000)) },
        { label: "Entries", scale: "n", stroke: "#2f6fde", width: 2, value: count },
        { label: "Live", scale: "n", stroke: "#1f9d6a", width: 2, dash: [6, 4], value: count },
        { label: "Reclaimable", scale: "b", stroke: "#e0913a", fill: "rgba(224, 145, 58, 0.12)", width: 1.5, value: bytes },
        { label: "Freed", scale: "b", stroke: "#8e5cd9", width: 1.5, value: bytes },
      ],
      axes: [
        {},
        { scale: "n", values: (u, vals) => vals.map((v) => fmt.format(v)), size: 72 },
        { scale: "b", side: 1, grid: { show: false }, values: (u, vals) => vals.map(fmtBytes), size: 70 },
      ],
    },
    chartData(samples),
    box,
  );
  box.dataset.series = chart.series.length - 1;
  new ResizeObserver(() => chart.setSize(chartSize())).observe(box);
}

// ---------- reset ----------

function deleteDatabase(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error ?? new Error(`could not delete database ${name}`));
    req.onblocked = () => reject(new Error(`deleting ${name} is blocked: close the demo in other tabs`));
  });
}

async function doReset() {
  const kind = current.kind;
  if (!confirm(`Delete every entry and blob of the ${kind} store and start empty?`)) return;
  await action(async () => {
    current.sweeper.close();
    const store = stores.get(kind);
    stores.delete(kind);
    if (kind !== "memory") store.close();
    if (kind === "indexeddb") await deleteDatabase(DB_NAME);
    if (kind === "opfs") await kv.deleteOpfs(DB_NAME);
    perStore.delete(kind);
    current = undefined;
    await useStore(kind);
    $("gen-result").textContent = "";
    setStatus(`The ${kind} store is empty`);
    await refresh("reset");
  });
}

// ---------- start ----------

async function start() {
  setBusy(true);
  try {
    [kv, { default: uPlot }] = await Promise.all([import("/pkg/index.js"), import("/vendor/uplot/uPlot.esm.js")]);
    if (!navigator.storage?.getDirectory) {
      const opt = $("store-select").querySelector('option[value="opfs"]');
      opt.disabled = true;
      opt.textContent += " (not in this browser)";
    }
    const asked = new URL(location.href).searchParams.get("store");
    const kind = ["memory", "indexeddb", "opfs"].includes(asked) ? asked : "indexeddb";
    await useStore(kind);
    await refresh("open");
    setStatus(`Ready · ${kind}`);
    document.body.dataset.ready = "true";
  } catch (err) {
    setStatus("Failed to start", "error");
    showError(err);
    document.body.dataset.ready = "error";
  } finally {
    setBusy(false);
  }
  setInterval(renderSchedulerStats, 1000);
}

$("generate-form").addEventListener("submit", doGenerate);
$("delete-notes").addEventListener("click", deleteOldestNotes);
$("policy-form").addEventListener("submit", applyPolicy);
// Edited fields wait for Apply: say so, until it is pressed.
$("policy-form").addEventListener("input", () => {
  $("policy-result").textContent = "Edited: press Apply to use these settings (until then the last applied ones stay).";
});
$("store-select").addEventListener("change", switchStore);
$("plan-button").addEventListener("click", () => action(() => refresh("plan")));
$("run-button").addEventListener("click", doRun);
$("cancel-button").addEventListener("click", cancelRun);
$("request-run").addEventListener("click", requestRun);
$("reset-button").addEventListener("click", doReset);
$("error-dismiss").addEventListener("click", clearError);

start();
