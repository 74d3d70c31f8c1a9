// The kvsweep demo: an IndexedDB store, its plan, a cleanup run with progress,
// and a chart of the store over time. Plain DOM, no framework, no network.

const DB_NAME = "kvsweep-demo";
/** Drafts keep the newest 5 per namespace; everything else follows TTLs. */
/**
 * No grace period, so a demo's unreferenced attachments and blobs go at the next
 * run; an app keeps the default 10 minutes, for writers that store an
 * attachment before the record that references it.
 */
const POLICY = { groups: { drafts: { keepLast: 5 } }, orphanGraceMs: 0 };
/** Small batches so the progress bar has steps to show on a few hundred deletes. */
const BATCH_SIZE = 20;
const NAMESPACES = ["app", "user-1", "user-2"];
const MAX_PLAN_ROWS = 500;
const MAX_HISTORY = 60;

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en");

let kv; // the package module
let store; // KvStore
let sweeper; // Sweeper
let busy = false;
let finished = 0; // user actions completed, exposed as body[data-actions] for tests
/** Storage after each action: { label, entries, live, garbage, garbageBytes, at }. */
const history = [];

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
window.addEventListener("error", (e) => showError(e.error ?? e.message));

// ---------- helpers ----------

function setStatus(text, state = "ok") {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = state;
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return "–";
  if (n < 1000) return `${fmt.format(n)} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

function nsLabel(ns) {
  if (ns === undefined) return "—";
  return ns === "" ? "(default)" : ns;
}

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

function setBusy(on) {
  busy = on;
  document.body.dataset.busy = String(on);
  for (const b of document.querySelectorAll("[data-busy-lock]")) b.disabled = on;
}

/** Runs one user action: one at a time, errors shown in the page. */
async function action(fn) {
  if (busy || !sweeper) return;
  setBusy(true);
  clearError();
  try {
    await fn();
  } catch (err) {
    showError(err);
  } finally {
    setBusy(false);
    document.body.dataset.actions = String(++finished);
  }
}

// ---------- store state ----------

/** A dry run gives the store's counts; records them in the history and the stats. */
async function refresh(label) {
  const plan = await sweeper.plan({ mode: "full" });
  const { summary, actions } = plan;
  const garbageBytes = actions.reduce((sum, a) => sum + a.bytes, 0);
  $("stat-entries").textContent = fmt.format(summary.scanned);
  $("stat-live").textContent = fmt.format(summary.reachable);
  $("stat-garbage").textContent = fmt.format(actions.length);
  $("stat-bytes").textContent = fmtBytes(garbageBytes);
  $("stats").dataset.entries = summary.scanned;
  $("stats").dataset.live = summary.reachable;
  $("stats").dataset.garbage = actions.length;
  history.push({
    label,
    at: Date.now(),
    entries: summary.scanned,
    live: summary.reachable,
    garbage: actions.length,
    garbageBytes,
  });
  if (history.length > MAX_HISTORY) history.splice(0, history.length - MAX_HISTORY);
  drawChart();
  return plan;
}

// ---------- adding entries ----------

function readTtlMs() {
  const input = $("add-ttl");
  if (input.validity.badInput) throw new Error("TTL must be a number of seconds");
  if (input.value.trim() === "") return undefined;
  // Seconds in the form, milliseconds in the API. A negative TTL goes through,
  // so the page shows the library's own error for it.
  return Math.round(Number(input.value) * 1000);
}

async function addEntry(ev) {
  ev.preventDefault();
  await action(async () => {
    const key = $("add-key").value;
    const value = $("add-value").value;
    const options = { pinned: $("add-pinned").checked };
    const ttlMs = readTtlMs();
    if (ttlMs !== undefined) options.ttlMs = ttlMs;
    const namespace = $("add-namespace").value.trim();
    if (namespace) options.namespace = namespace;
    await sweeper.put(key, value, options);
    $("add-key").value = "";
    $("add-value").value = "";
    setStatus(`Added “${key}”${namespace ? ` in ${namespace}` : ""}`);
    markPlanStale();
    await refresh(`add ${key}`);
  });
}

/** The sample batch: 200 entries, counts described in index.html. */
function sampleEntries() {
  const out = [];
  for (let i = 0; i < 160; i++) {
    const key = `sample-${String(i).padStart(3, "0")}`;
    const namespace = NAMESPACES[i % 3];
    const value = { n: i, text: `sample value ${i}`, at: new Date().toISOString() };
    switch (i % 4) {
      case 0: {
        // Expired at once; its attachment lives only while it does.
        const att = `${key}/attachment`;
        out.push([att, { of: key, body: "x".repeat(64 + i) }, { namespace, dependent: true }]);
        out.push([key, value, { namespace, ttlMs: 0, pinned: i % 20 === 0, refs: [att] }]);
        break;
      }
      case 1:
        out.push([key, value, { namespace, ttlMs: 10 * 60_000 }]);
        break;
      case 2:
        out.push([key, value, { namespace, ttlMs: 60 * 60_000 }]);
        break;
      default:
        out.push([key, value, { namespace, group: "drafts" }]);
    }
  }
  return out;
}

async function addBatch() {
  await action(async () => {
    const entries = sampleEntries();
    const t0 = performance.now();
    let done = 0;
    for (const [key, value, options] of entries) {
      await sweeper.put(key, value, options);
      done++;
      if (done % 20 === 0) $("batch-result").textContent = `Adding… ${done}/${entries.length}`;
    }
    const ms = Math.round(performance.now() - t0);
    $("batch-result").textContent = `Added ${entries.length} entries in ${fmt.format(ms)} ms.`;
    $("batch-result").dataset.added = entries.length;
    setStatus(`Added ${entries.length} sample entries`);
    markPlanStale();
    await refresh("sample batch");
  });
}

// ---------- lookup ----------

async function lookUp(ev) {
  ev.preventDefault();
  await action(async () => {
    const key = $("get-key").value;
    const namespace = $("get-namespace").value.trim();
    const value = await sweeper.get(key, namespace ? { namespace } : undefined);
    const out = $("get-result");
    out.replaceChildren();
    if (value === undefined) {
      out.append(el("span", { class: "muted" }, `“${key}”: missing or expired.`));
    } else {
      const text = value instanceof Uint8Array ? `${value.length} bytes` : JSON.stringify(value);
      out.append(`“${key}” = `, el("code", {}, text));
    }
  });
}

// ---------- plan ----------

function reasonBadge(reason) {
  return el("span", { class: `badge reason-${reason}` }, reason);
}

function renderPlan(plan) {
  const { actions, summary } = plan;
  const bytes = actions.reduce((sum, a) => sum + a.bytes, 0);
  const byReason = Object.entries(summary.deleted ?? {})
    .map(([r, t]) => `${r} ${fmt.format(t.count)}`)
    .join(", ");
  const at = new Date(summary.now).toLocaleTimeString();
  const scanned = `Scanned ${fmt.format(summary.scanned)} entries, ${fmt.format(summary.reachable)} reachable`;
  const box = $("plan-summary");
  box.dataset.actions = actions.length;
  box.classList.remove("muted");
  box.textContent =
    actions.length === 0
      ? `Nothing to delete (${at}). ${scanned}.`
      : `${fmt.format(actions.length)} to delete, ${fmtBytes(bytes)} (${at}): ${byReason}. ${scanned}.`;
  if (summary.youngBlobs > 0) box.textContent += ` ${summary.youngBlobs} unreferenced blobs kept in their grace period.`;
  if (summary.zombies?.length) box.textContent += ` Zombie namespaces: ${summary.zombies.join(", ")}.`;
  if (summary.corrupt?.length) box.textContent += ` ${summary.corrupt.length} undecodable entries kept.`;

  const rows = actions.slice(0, MAX_PLAN_ROWS).map((a) =>
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
  if (actions.length > MAX_PLAN_ROWS) {
    const more = el("td", { colSpan: 5, class: "muted" }, `… and ${fmt.format(actions.length - MAX_PLAN_ROWS)} more`);
    rows.push(el("tr", {}, more));
  }
  $("plan-rows").replaceChildren(...rows);
  $("plan-table").hidden = actions.length === 0;
  $("plan-card").dataset.stale = "false";
  $("plan-stale").hidden = true;
}

/** The store changed: a plan on screen no longer says what a run would do. */
function markPlanStale() {
  if ($("plan-summary").dataset.actions === undefined) return;
  $("plan-card").dataset.stale = "true";
  $("plan-stale").hidden = false;
}

async function doPlan() {
  await action(async () => {
    const plan = await refresh("plan");
    renderPlan(plan);
    setStatus(`Planned: ${plan.actions.length} to delete`);
  });
}

// ---------- run ----------

function showProgress(p) {
  const bar = $("run-progress");
  bar.max = Math.max(1, p.total);
  bar.value = p.running ? Math.min(p.processed, p.total) : bar.max;
  $("run-progress-text").textContent = p.running
    ? `${p.phase}: ${fmt.format(p.processed)} / ${fmt.format(p.total)} · ${fmt.format(p.deleted)} deleted`
    : `Finished · ${fmt.format(p.deleted)} deleted`;
}

function renderReport(report) {
  const t = total(report.deleted);
  const box = $("report");
  box.hidden = false;
  box.dataset.deleted = t.count;
  box.dataset.done = String(report.done);
  const state = report.done ? "complete" : `stopped (${report.stopped ?? "incomplete"})`;
  $("report-summary").textContent =
    `Deleted ${fmt.format(t.count)} (${fmtBytes(t.bytes)}) in ${fmt.format(report.durationMs)} ms, ${state}. ` +
    `Scanned ${fmt.format(report.scanned)} entries, ${fmt.format(report.reachable)} reachable, ` +
    `${fmt.format(report.kept)} kept, ${fmt.format(report.errors.length)} errors.`;
  const rows = Object.entries(report.deleted).map(([reason, tally]) =>
    el(
      "tr",
      { "data-reason": reason, "data-count": tally.count },
      el("td", {}, reasonBadge(reason)),
      el("td", { class: "num" }, fmt.format(tally.count)),
      el("td", { class: "num" }, fmt.format(tally.bytes)),
    ),
  );
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colSpan: 3, class: "muted" }, "Nothing was garbage.")));
  $("report-rows").replaceChildren(...rows);
  $("report-errors").replaceChildren(
    ...report.errors.map((e) =>
      el("li", {}, `${e.kind} ${e.namespace ? `${nsLabel(e.namespace)}/` : ""}${e.key}: ${e.message}`),
    ),
  );
}

async function doRun() {
  await action(async () => {
    const bar = $("run-progress");
    bar.value = 0;
    $("run-progress-text").textContent = "Planning…";
    let updates = 0;
    const report = await sweeper.run({
      mode: "full",
      onProgress: (p) => {
        updates++;
        showProgress(p);
      },
    });
    bar.value = bar.max; // a run with nothing to delete reports no batches
    const t = total(report.deleted);
    $("run-progress-text").textContent = `Finished · ${fmt.format(t.count)} deleted in ${updates} progress steps`;
    $("run-progress").dataset.updates = updates;
    renderReport(report);
    if (t.count > 0) markPlanStale();
    setStatus(`Cleanup done: ${t.count} deleted`);
    await refresh("run");
  });
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
  if (!confirm(`Delete the IndexedDB database “${DB_NAME}” and start empty?`)) return;
  await action(async () => {
    sweeper.close();
    store.close();
    sweeper = undefined;
    try {
      await deleteDatabase(DB_NAME);
    } finally {
      store = await kv.openIndexedDb(DB_NAME);
      sweeper = new kv.Sweeper(store, { policy: POLICY, batchSize: BATCH_SIZE });
    }
    history.length = 0;
    $("plan-rows").replaceChildren();
    $("plan-table").hidden = true;
    $("plan-stale").hidden = true;
    $("plan-card").dataset.stale = "false";
    delete $("plan-summary").dataset.actions;
    $("plan-summary").classList.add("muted");
    $("plan-summary").textContent = "Press Plan for a dry run.";
    $("report").hidden = true;
    $("run-progress").value = 0;
    $("run-progress-text").textContent = "Idle";
    setStatus("Database deleted; the store is empty");
    await refresh("reset");
  });
}

// ---------- chart ----------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round axis maximum: the smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k that is at least `v`. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const box = $("chart");
  const W = 520;
  const H = 230;
  const L = 52;
  const R = 12;
  const top = { y: 22, h: 110 }; // entries panel
  const bottom = { y: 162, h: 40 }; // reclaimable bytes panel
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": "Entries, live entries and reclaimable bytes after each action",
  });
  const n = history.length;
  const x = (i) => (n <= 1 ? L + (W - L - R) / 2 : L + (i * (W - L - R)) / (n - 1));

  // Legend.
  const legend = [
    ["entries", "Entries"],
    ["live", "Live"],
    ["bytes", "Reclaimable bytes"],
  ];
  let lx = L;
  for (const [cls, label] of legend) {
    root.append(svg("rect", { x: lx, y: 4, width: 10, height: 10, rx: 2, class: `swatch ${cls}` }));
    root.append(svg("text", { x: lx + 14, y: 13, class: "legend" }, label));
    lx += 24 + label.length * 6.5;
  }

  if (n === 0) {
    root.append(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "No data yet"));
    box.replaceChildren(root);
    return;
  }

  // Panel 1: entry counts.
  const maxCount = niceMax(Math.max(...history.map((h) => h.entries)));
  const yc = (v) => top.y + top.h - (v / maxCount) * top.h;
  for (const v of [0, maxCount / 2, maxCount]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: yc(v), y2: yc(v), class: "gridline" }));
    root.append(svg("text", { x: L - 6, y: yc(v) + 4, class: "axis", "text-anchor": "end" }, fmt.format(v)));
  }
  for (const [key, cls] of [
    ["entries", "entries"],
    ["live", "live"],
  ]) {
    const pts = history.map((h, i) => `${x(i).toFixed(1)},${yc(h[key]).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: pts, class: `line ${cls}` }));
    history.forEach((h, i) => {
      const dot = svg("circle", { cx: x(i), cy: yc(h[key]), r: 3, class: `dot ${cls}` });
      dot.append(svg("title", {}, `${h.label}: ${h[key]} ${key}`));
      root.append(dot);
    });
  }

  // Panel 2: reclaimable bytes as bars.
  const maxBytes = niceMax(Math.max(...history.map((h) => h.garbageBytes)));
  const yb = (v) => bottom.y + bottom.h - (v / maxBytes) * bottom.h;
  root.append(svg("line", { x1: L, x2: W - R, y1: yb(0), y2: yb(0), class: "gridline" }));
  root.append(svg("line", { x1: L, x2: W - R, y1: yb(maxBytes), y2: yb(maxBytes), class: "gridline" }));
  root.append(svg("text", { x: L - 6, y: yb(maxBytes) + 4, class: "axis", "text-anchor": "end" }, fmtBytes(maxBytes)));
  root.append(svg("text", { x: L - 6, y: yb(0) + 4, class: "axis", "text-anchor": "end" }, "0"));
  const bw = Math.max(3, Math.min(16, ((W - L - R) / Math.max(n, 1)) * 0.6));
  history.forEach((h, i) => {
    const bar = svg("rect", {
      x: Math.min(Math.max(x(i) - bw / 2, L), W - R - bw),
      y: yb(h.garbageBytes),
      width: bw,
      height: Math.max(0, yb(0) - yb(h.garbageBytes)),
      class: "bar bytes",
    });
    bar.append(svg("title", {}, `${h.label}: ${fmtBytes(h.garbageBytes)} reclaimable`));
    root.append(bar);
  });

  root.append(
    svg(
      "text",
      { x: (L + W - R) / 2, y: H - 4, class: "axis", "text-anchor": "middle" },
      `after each of the last ${n} action${n === 1 ? "" : "s"} (latest: ${history[n - 1].label})`,
    ),
  );
  box.dataset.points = n;
  box.replaceChildren(root);
}

// ---------- start ----------

async function start() {
  drawChart();
  setBusy(true);
  try {
    kv = await import("/pkg/index.js");
    store = await kv.openIndexedDb(DB_NAME);
    sweeper = new kv.Sweeper(store, { policy: POLICY, batchSize: BATCH_SIZE });
    await refresh("open");
    setStatus(`Ready · IndexedDB “${DB_NAME}”`);
    document.body.dataset.ready = "true";
  } catch (err) {
    setStatus("Failed to start", "error");
    showError(err);
    document.body.dataset.ready = "error";
  } finally {
    setBusy(false);
    if (!sweeper) for (const b of document.querySelectorAll("[data-busy-lock]")) b.disabled = true;
  }
}

$("add-form").addEventListener("submit", addEntry);
$("add-batch").addEventListener("click", addBatch);
$("get-form").addEventListener("submit", lookUp);
$("plan-button").addEventListener("click", doPlan);
$("run-button").addEventListener("click", doRun);
$("reset-button").addEventListener("click", doReset);
$("error-dismiss").addEventListener("click", clearError);

start();
