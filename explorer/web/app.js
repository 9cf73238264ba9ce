// apmkit explorer: one page, four views, routed by the path so every view has a link:
//   /                      transactions: search form, scatter chart, list
//   /transaction/{id}      a trace's call tree and timeline
//   /servicemap            who calls whom
//   /inspector/{agent}     an agent's JVM and system charts
// Plain DOM, no framework; everything it needs comes from apmkit's /api/v1.
"use strict";

const HOUR = 3600 * 1000;
const main = document.getElementById("main");

// ---------- small helpers ----------

// h builds an element: h("a", {href: "/"}, "text", child...). Attributes starting with
// "on" are listeners; text is always set as text, never parsed as HTML.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: the page's CSP forbids style attributes
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const k of kids) el.append(k instanceof Node ? k : String(k));
  return el;
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== "" && v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtTime(ms, withMs = true) {
  const d = new Date(ms);
  const t = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
}
function fmtMs(v) {
  if (v >= 10000) return `${(v / 1000).toFixed(1)} s`;
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ms`;
}
function fmtNum(v, unit) {
  if (unit === "bytes") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  }
  const r = Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toFixed(2)).toString();
  return unit === "percent" ? `${r} %` : unit === "ms" ? `${r} ms` : unit === "per_second" ? `${r}/s` : r;
}
// toLocalInput / fromLocalInput convert epoch ms and <input type=datetime-local> values.
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fromLocalInput(v) { const t = new Date(v).getTime(); return Number.isFinite(t) ? t : null; }

function showError(where, err) {
  where.replaceChildren(h("p", { class: "error", role: "alert" }, err.message || String(err)));
}

// The time range shared by the views: from the URL (epoch ms), else the last hour.
function rangeOf(q) {
  const to = Number(q.get("to")) || Date.now();
  const from = Number(q.get("from")) || to - HOUR;
  return { from, to };
}

// rangeInputs is the from/to fields with quick choices; onPick gets a new range.
function rangeInputs(range, onPick) {
  const from = h("input", { type: "datetime-local", step: "1", name: "from", value: toLocalInput(range.from), "aria-label": "From" });
  const to = h("input", { type: "datetime-local", step: "1", name: "to", value: toLocalInput(range.to), "aria-label": "To" });
  const quick = h("select", { "aria-label": "Quick range", onchange: () => {
    if (!quick.value) return;
    const now = Date.now();
    onPick({ from: now - Number(quick.value), to: now });
  } },
  h("option", { value: "" }, "Range…"),
  [["15 min", 15 * 60e3], ["1 hour", HOUR], ["6 hours", 6 * HOUR], ["24 hours", 24 * HOUR], ["3 days", 72 * HOUR]]
    .map(([n, v]) => h("option", { value: v }, "Last " + n)));
  return { from, to, quick, value: () => ({ from: fromLocalInput(from.value), to: fromLocalInput(to.value) }) };
}

// ---------- routing ----------

function navigate(url, replace) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", render);
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && !/INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) {
    const first = main.querySelector("input, select");
    if (first) { e.preventDefault(); first.focus(); }
  }
});

let current = null; // the view's cleanup
function render() {
  if (current) current();
  current = null;
  const path = location.pathname;
  const q = new URLSearchParams(location.search);
  let view = "search";
  if (path.startsWith("/transaction/")) view = "transaction";
  else if (path.startsWith("/servicemap")) view = "servicemap";
  else if (path.startsWith("/inspector")) view = "inspector";
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.dataset.view === view || (view === "transaction" && a.dataset.view === "search")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (view === "transaction") transactionView(decodeURIComponent(path.slice("/transaction/".length)));
  else if (view === "servicemap") serviceMapView(q);
  else if (view === "inspector") inspectorView(decodeURIComponent(path.slice("/inspector".length).replace(/^\//, "")), q);
  else searchView(q);
}

// ---------- transactions ----------

const searchFields = [
  ["app", "Application"], ["agent", "Agent id"], ["url", "URL prefix"], ["method", "HTTP method"],
  ["status", "Status (500, 5xx)"], ["min_ms", "Min ms"], ["max_ms", "Max ms"], ["exception", "Exception text"],
  ["trace_id", "Trace id"], ["attr", "Attribute key=value"],
];

function searchView(q) {
  const range = rangeOf(q);
  document.title = "Transactions · apmkit explorer";
  const r = rangeInputs(range, (nr) => submit(nr));
  const inputs = {};
  for (const [name, label] of searchFields) {
    inputs[name] = h("input", { name, value: q.get(name) || "", autocomplete: "off", list: name === "app" ? "apps" : undefined });
  }
  const err = h("select", { name: "error" }, h("option", { value: "" }, "any"), h("option", { value: "false" }, "ok"), h("option", { value: "true" }, "failed"));
  err.value = q.get("error") || "";
  const sort = h("select", { name: "sort" }, h("option", { value: "start" }, "newest first"), h("option", { value: "duration" }, "slowest first"));
  sort.value = q.get("sort") || "start";
  const limit = h("input", { name: "limit", type: "number", min: "1", max: "10000", value: q.get("limit") || "100" });
  const apps = h("datalist", { id: "apps" });

  function params(nr) {
    const p = new URLSearchParams();
    const rr = nr || r.value();
    if (rr.from !== null) p.set("from", rr.from);
    if (rr.to !== null) p.set("to", rr.to);
    for (const [name] of searchFields) if (inputs[name].value.trim()) p.set(name, inputs[name].value.trim());
    if (err.value) p.set("error", err.value);
    if (sort.value !== "start") p.set("sort", sort.value);
    if (limit.value && limit.value !== "100") p.set("limit", limit.value);
    return p;
  }
  function submit(nr, extra) {
    const p = params(nr);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    navigate("/?" + p.toString());
  }
  const field = (name, label, cls) => h("label", { class: cls || "" }, label, inputs[name]);
  const form = h("form", { class: "search panel", role: "search", onsubmit: (e) => { e.preventDefault(); submit(); } },
    h("label", { class: "wide" }, "From", r.from), h("label", { class: "wide" }, "To", r.to),
    h("label", {}, "Quick range", r.quick), h("label", {}, "Result", err), h("label", {}, "Sort", sort), h("label", {}, "Limit", limit),
    ...searchFields.filter(([name]) => name !== "exception" && name !== "attr").map(([name, label]) => field(name, label)),
    field("exception", "Exception text", "wide3"), field("attr", "Attribute key=value", "wide3"),
    h("div", { class: "actions wide" }, h("button", { type: "submit" }, "Search"),
      h("button", { type: "button", class: "secondary", onclick: () => navigate("/") }, "Reset")),
    apps);

  const summary = h("div", { class: "summary" }, h("span", { class: "muted" }, "Searching…"));
  const scatter = h("div", { class: "scatter panel", "aria-label": "Response time scatter chart: drag to select a time and response-time range" });
  const list = h("div", { class: "listwrap" });
  main.append(h("h1", {}, "Transactions"), form, summary, scatter, list);

  api("/api/v1/agents").then((d) => {
    for (const app of [...new Set(d.agents.map((a) => a.app))].filter(Boolean)) apps.append(h("option", { value: app }));
  }).catch(() => {});

  const apiParams = Object.fromEntries(params(range));
  if (q.getAll("attr").length > 1) apiParams.attr = q.getAll("attr");
  const listReq = api("/api/v1/transactions", apiParams);
  // The scatter shows up to 10,000 of the range's transactions, newest first.
  const dotsReq = api("/api/v1/transactions", { ...apiParams, sort: "start", limit: 10000 });
  Promise.all([listReq, dotsReq]).then(([res, dots]) => {
    summary.replaceChildren(...[
      h("strong", {}, `${res.total} transaction${res.total === 1 ? "" : "s"}`),
      h("span", { class: "muted" }, `${fmtTime(res.from, false)} – ${fmtTime(res.to, false)}`),
      res.total > res.transactions.length && h("span", { class: "muted" }, `showing ${res.transactions.length}`),
      h("span", { class: "legend" }, h("span", {}, h("i", { class: "dot ok" }), "ok"), h("span", {}, h("i", { class: "dot fail" }), "failed")),
    ].filter(Boolean));
    drawScatter(scatter, dots, range, (sel) => submit({ from: sel.from, to: sel.to }, { min_ms: sel.min, max_ms: sel.max }));
    if (res.total === 0) return noData(list, range);
    list.replaceChildren(transactionTable(res.transactions));
  }).catch((e) => showError(list, e));
}

function transactionTable(rows) {
  return h("table", { class: "list", id: "transactions" },
    h("thead", {}, h("tr", {}, ["Start", "Application", "Agent", "URL", "Method", "Status", "Response", "Exception", "Trace id"]
      .map((c, i) => h("th", { scope: "col", class: i === 6 ? "num" : "" }, c)))),
    h("tbody", {}, rows.map((t) => h("tr", { class: t.error ? "failed" : "", "data-trace": t.trace_id },
      h("td", {}, fmtTime(t.start_ms)),
      h("td", {}, t.app),
      h("td", {}, t.agent_id),
      h("td", { class: "clip", title: t.url }, h("a", { href: "/transaction/" + encodeURIComponent(t.trace_id) }, t.url || "(no url)")),
      h("td", {}, t.method),
      h("td", {}, t.status || ""),
      h("td", { class: "num" }, fmtMs(t.duration_ms)),
      h("td", { class: "clip", title: t.exception }, t.exception),
      h("td", { class: "mono" }, t.trace_id)))));
}

// noData says so, and points at the newest data the store has, if it is elsewhere.
function noData(where, range) {
  where.replaceChildren(h("p", { class: "muted" }, "No transaction in this range."));
  api("/api/v1/agents").then((d) => {
    const last = Math.max(0, ...d.agents.map((a) => a.last_seen_ms || 0));
    if (!last || (last >= range.from && last <= range.to)) return;
    where.append(h("p", {}, `The newest data is from ${fmtTime(last, false)}: `,
      h("a", { href: `/?from=${last - HOUR}&to=${last + 1000}` }, "show the hour before it")));
  }).catch(() => {});
}

// drawScatter plots response time over start time, failed on top; a drag selects a
// rectangle and searches it.
function drawScatter(box, res, range, onSelect) {
  const base = h("canvas"), overlay = h("canvas", { class: "overlay", tabindex: "-1" });
  box.replaceChildren(base, overlay);
  const W = box.clientWidth - 24, H = box.clientHeight - 20, dpr = window.devicePixelRatio || 1;
  for (const c of [base, overlay]) {
    c.width = W * dpr; c.height = H * dpr;
    c.style.width = W + "px"; c.style.height = H + "px"; c.style.left = "12px"; c.style.top = "10px";
    c.getContext("2d").scale(dpr, dpr);
  }
  const L = 56, R = 10, T = 8, B = 26;
  const maxMs = niceMax(Math.max(1, ...res.transactions.map((t) => t.duration_ms)));
  const x = (ms) => L + ((ms - range.from) / Math.max(1, range.to - range.from)) * (W - L - R);
  const y = (d) => H - B - (d / maxMs) * (H - T - B);
  const g = base.getContext("2d");
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#5b6475"; g.strokeStyle = "#e3e6ec";
  for (let i = 0; i <= 4; i++) {
    const v = (maxMs * i) / 4, yy = y(v);
    g.beginPath(); g.moveTo(L, yy); g.lineTo(W - R, yy); g.stroke();
    g.textAlign = "right"; g.fillText(fmtMs(v), L - 6, yy + 4);
  }
  for (let i = 0; i <= 4; i++) {
    const t = range.from + ((range.to - range.from) * i) / 4;
    g.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";
    g.fillText(fmtTime(t, false).slice(5), x(t), H - 8);
  }
  const css = getComputedStyle(document.documentElement);
  for (const failed of [false, true]) {
    g.fillStyle = css.getPropertyValue(failed ? "--fail" : "--ok").trim();
    g.globalAlpha = failed ? 0.9 : 0.6;
    for (const t of res.transactions) if (t.error === failed) g.fillRect(x(t.start_ms) - 2, y(t.duration_ms) - 2, 4, 4);
  }
  g.globalAlpha = 1;
  if (res.total > res.transactions.length) {
    g.fillStyle = "#5b6475"; g.textAlign = "right";
    g.fillText(`newest ${res.transactions.length} of ${res.total}`, W - R, T + 10);
  }
  // Drag to select.
  const o = overlay.getContext("2d");
  let start = null;
  const pos = (e) => { const b = overlay.getBoundingClientRect(); return [e.clientX - b.left, e.clientY - b.top]; };
  overlay.addEventListener("pointerdown", (e) => { start = pos(e); overlay.setPointerCapture(e.pointerId); });
  overlay.addEventListener("pointermove", (e) => {
    if (!start) return;
    const [px, py] = pos(e);
    o.clearRect(0, 0, W, H);
    o.fillStyle = "rgba(31,95,191,.12)"; o.strokeStyle = "#1f5fbf";
    o.fillRect(start[0], start[1], px - start[0], py - start[1]);
    o.strokeRect(start[0], start[1], px - start[0], py - start[1]);
  });
  overlay.addEventListener("pointerup", (e) => {
    if (!start) return;
    const [px, py] = pos(e);
    const [x0, x1] = [Math.min(start[0], px), Math.max(start[0], px)];
    const [y0, y1] = [Math.min(start[1], py), Math.max(start[1], py)];
    start = null;
    o.clearRect(0, 0, W, H);
    if (x1 - x0 < 4 || y1 - y0 < 4) return;
    const t = (xx) => Math.round(range.from + ((xx - L) / (W - L - R)) * (range.to - range.from));
    const d = (yy) => Math.max(0, ((H - B - yy) / (H - T - B)) * maxMs);
    onSelect({ from: t(x0), to: t(x1), min: Math.floor(d(y1)), max: Math.ceil(d(y0)) });
  });
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---------- call tree ----------

const ROW_H = 24;

function transactionView(id) {
  document.title = `Transaction ${id} · apmkit explorer`;
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  main.append(h("h1", {}, "Transaction ", h("span", { class: "mono" }, id)), body);
  api("/api/v1/transactions/" + encodeURIComponent(id)).then((t) => {
    body.replaceChildren();
    callTreeView(body, t);
  }).catch((e) => showError(body, e));
}

function callTreeView(box, t) {
  const rows = t.spans;
  const root = rows[0];
  const n = rows.length;
  // end[i]: the last row of i's subtree (rows are in pre-order).
  const end = new Int32Array(n), parent = new Int32Array(n).fill(-1);
  const stack = [];
  for (let i = 0; i < n; i++) {
    while (stack.length && rows[stack[stack.length - 1]].depth >= rows[i].depth) end[stack.pop()] = i - 1;
    if (stack.length) parent[i] = stack[stack.length - 1];
    stack.push(i);
  }
  while (stack.length) end[stack.pop()] = n - 1;
  const t0 = Math.min(...rows.map((r) => r.start_ms));
  const t1 = Math.max(...rows.map((r) => r.start_ms + r.exec_ms));
  const span = Math.max(t1 - t0, 1);
  const apps = [...new Set(rows.map((r) => r.app))];

  const collapsed = new Uint8Array(n);
  let visible = [], selected = 0, threshold = 0;
  const recompute = () => {
    visible = [];
    for (let i = 0; i < n; i++) { visible.push(i); if (collapsed[i]) i = end[i]; }
  };

  const hot = h("input", { type: "number", min: "0", step: "1", value: "", placeholder: "off", "aria-label": "Highlight rows whose self time is at least this many ms" });
  const hotCount = h("span", { class: "muted" });
  const head = h("div", { class: "panel trace-head" },
    h("span", { class: "big" }, root.app, " ", h("span", { class: "mono" }, root.args)),
    h("span", {}, "Start ", fmtTime(root.start_ms)),
    h("span", {}, "Response ", h("strong", {}, fmtMs(root.exec_ms))),
    h("span", {}, `${n} span rows · ${apps.length} application${apps.length === 1 ? "" : "s"}: ${apps.join(", ")}`),
    root.error ? h("span", { class: "error" }, root.exception || "failed") : null,
    t.truncated ? h("span", { class: "error" }, "truncated: the trace has more rows") : null);
  const toolbar = h("div", { class: "toolbar" },
    h("label", {}, "Highlight self ≥", hot, "ms"), hotCount,
    h("button", { type: "button", class: "secondary", onclick: () => nextHot() }, "Next slow (n)"),
    h("button", { type: "button", class: "secondary", onclick: () => { collapsed.fill(0); refresh(); } }, "Expand all"),
    h("button", { type: "button", class: "secondary", onclick: () => { for (let i = 0; i < n; i++) collapsed[i] = end[i] > i && rows[i].depth >= 1 ? 1 : 0; refresh(); } }, "Collapse below roots"));
  const cols = h("div", { class: "cols", role: "row" }, ["Method", "Argument", "Start", "Gap", "Exec", "Exec %", "Self", "Type", "Application", "Agent", "Timeline"]
    .map((c) => h("div", { role: "columnheader" }, c)));
  const spacer = h("div", { class: "spacer" });
  const viewport = h("div", { class: "viewport", tabindex: "0", role: "tree", "aria-label": "Call tree" }, spacer);
  const details = h("div", { class: "panel details", "aria-live": "polite" });
  box.append(head, toolbar, h("div", { class: "tree" }, cols, viewport), details);

  // A pool of row elements, reused as the view scrolls: the DOM holds a screenful of rows
  // whatever the trace's size.
  const pool = [];
  function rowEl(k) {
    while (pool.length <= k) {
      const cells = Array.from({ length: 11 }, (_, c) => h("div", { class: ["m", "args", "n", "n", "n", "n", "n", "", "", "", "tl"][c] }));
      const el = h("div", { class: "row", role: "treeitem" }, cells);
      el.addEventListener("click", () => { select(Number(el.dataset.i)); viewport.focus(); });
      el.addEventListener("dblclick", () => toggle(Number(el.dataset.i)));
      spacer.append(el);
      pool.push(el);
    }
    return pool[k];
  }
  function paint() {
    spacer.style.height = visible.length * ROW_H + "px";
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_H) - 5);
    const count = Math.ceil(viewport.clientHeight / ROW_H) + 10;
    let k = 0;
    for (let v = first; v < Math.min(visible.length, first + count); v++, k++) fill(rowEl(k), visible[v], v);
    for (; k < pool.length; k++) pool[k].style.display = "none";
  }
  function fill(el, i, v) {
    const r = rows[i];
    el.dataset.i = i;
    el.style.display = "";
    el.style.top = v * ROW_H + "px";
    el.className = "row" + (r.error ? " err" : "") + (r.type === "entry" ? " entry" : "") +
      (threshold > 0 && r.self_ms >= threshold ? " hot" : "") + (i === selected ? " sel" : "");
    el.id = "row-" + i;
    el.setAttribute("aria-level", r.depth + 1);
    el.setAttribute("aria-selected", i === selected);
    if (end[i] > i) el.setAttribute("aria-expanded", !collapsed[i]); else el.removeAttribute("aria-expanded");
    const c = el.children;
    c[0].style.paddingLeft = 6 + Math.min(r.depth, 30) * 12 + "px"; // deeper rows say their depth in the title
    c[0].replaceChildren(h("span", { class: "tog" }, end[i] > i ? (collapsed[i] ? "▸" : "▾") : ""), r.method);
    c[0].title = `${r.method} (depth ${r.depth})`;
    c[1].textContent = r.args; c[1].title = r.args;
    c[2].textContent = fmtTime(r.start_ms).slice(11);
    c[3].textContent = r.gap_ms; c[4].textContent = r.exec_ms; c[5].textContent = r.exec_pct.toFixed(1);
    c[6].textContent = r.self_ms; c[7].textContent = r.type; c[8].textContent = r.app; c[9].textContent = r.agent_id;
    const bar = c[10].firstChild || c[10].appendChild(document.createElement("i"));
    const width = Math.max(1.5, (r.exec_ms / span) * 100);
    bar.style.width = width + "%";
    bar.style.left = Math.min(((r.start_ms - t0) / span) * 100, 100 - width) + "%";
  }
  function refresh() { recompute(); paint(); showDetails(); }
  function toggle(i) { if (end[i] > i) { collapsed[i] ^= 1; refresh(); } }
  function select(i) {
    // A row inside a folded subtree is shown by unfolding its ancestors.
    for (let p = parent[i]; p >= 0; p = parent[p]) if (collapsed[p]) { collapsed[p] = 0; recompute(); }
    selected = i;
    const v = visible.indexOf(i);
    const top = v * ROW_H;
    if (top < viewport.scrollTop) viewport.scrollTop = top;
    else if (top + ROW_H > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = top + ROW_H - viewport.clientHeight;
    viewport.setAttribute("aria-activedescendant", "row-" + i);
    paint();
    showDetails();
  }
  function showDetails() {
    const r = rows[selected];
    details.replaceChildren(h("h2", {}, r.method), h("dl", {},
      [["Argument", r.args], ["Application", `${r.app} · agent ${r.agent_id}${r.agent_name && r.agent_name !== r.agent_id ? " (" + r.agent_name + ")" : ""}`],
        ["Type", `${r.type} · ${r.service_type}`], ["Start", fmtTime(r.start_ms)],
        ["Exec / self", `${fmtMs(r.exec_ms)} (${r.exec_pct.toFixed(1)} %) / ${fmtMs(r.self_ms)}, gap ${fmtMs(r.gap_ms)}`],
        ["Exception", r.exception], ["Span id", `${r.span_id} (parent ${r.parent_id})`]]
        .filter(([, v]) => v).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  }
  function nextHot() {
    if (threshold <= 0) { hot.focus(); return; }
    for (let k = 1; k <= n; k++) {
      const i = (selected + k) % n;
      if (rows[i].self_ms >= threshold) { select(i); viewport.focus(); return; }
    }
  }
  hot.addEventListener("input", () => {
    threshold = Number(hot.value) || 0;
    const count = rows.filter((r) => r.self_ms >= threshold).length;
    hotCount.textContent = threshold > 0 ? `${count} row${count === 1 ? "" : "s"}` : "";
    paint();
  });
  viewport.addEventListener("scroll", () => requestAnimationFrame(paint), { passive: true });
  viewport.addEventListener("keydown", (e) => {
    const v = visible.indexOf(selected);
    const page = Math.max(1, Math.floor(viewport.clientHeight / ROW_H) - 1);
    const go = (nv) => select(visible[Math.max(0, Math.min(visible.length - 1, nv))]);
    switch (e.key) {
      case "ArrowDown": go(v + 1); break;
      case "ArrowUp": go(v - 1); break;
      case "PageDown": go(v + page); break;
      case "PageUp": go(v - page); break;
      case "Home": go(0); break;
      case "End": go(visible.length - 1); break;
      case "ArrowRight": if (end[selected] > selected && collapsed[selected]) toggle(selected); else go(v + 1); break;
      case "ArrowLeft": if (end[selected] > selected && !collapsed[selected]) toggle(selected); else if (parent[selected] >= 0) select(parent[selected]); break;
      case "Enter": case " ": toggle(selected); break;
      case "n": nextHot(); break;
      default: return;
    }
    e.preventDefault();
  });
  const onResize = () => paint();
  window.addEventListener("resize", onResize);
  current = () => window.removeEventListener("resize", onResize);
  refresh();
}

// ---------- server map ----------

function serviceMapView(q) {
  const range = rangeOf(q);
  document.title = "Server map · apmkit explorer";
  const r = rangeInputs(range, (nr) => go(nr));
  const go = (nr) => navigate(`/servicemap?from=${nr.from}&to=${nr.to}`);
  const form = h("form", { class: "panel range", onsubmit: (e) => { e.preventDefault(); go(r.value()); } },
    h("label", {}, "From", r.from), h("label", {}, "To", r.to), h("label", {}, "Quick range", r.quick),
    h("button", { type: "submit" }, "Show"));
  const graph = h("div", { class: "map" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { class: "panel", "aria-live": "polite" }, h("span", { class: "muted" }, "Select an edge (click, or Tab then Enter) to see its response-time histogram."));
  const table = h("div");
  main.append(h("h1", {}, "Server map"), form, graph, detail, table);
  api("/api/v1/servicemap", { from: range.from, to: range.to }).then((m) => {
    if (m.edges.length === 0) { graph.replaceChildren(h("p", { class: "muted", style: "padding:10px" }, "No calls in this range.")); return noData(table, range); }
    const depth = drawMap(graph, m, (e) => showEdge(detail, e));
    const d = (e) => depth.get(nodeKey(e.from, e.from_type)) ?? Infinity;
    table.replaceChildren(h("h2", {}, "Edges"), edgeTable([...m.edges].sort((a, b) => d(a) - d(b))));
  }).catch((e) => showError(graph, e));
}

const nodeKey = (name, type) => type + ":" + name;

// layers places each node one column right of its furthest caller (callers left, callees
// right, USER first); nodes in a call cycle stop moving after as many rounds as there are
// nodes. Within a column, nodes follow their callers' rows, which keeps edges from
// crossing.
function layers(m) {
  const key = nodeKey;
  const depth = new Map(m.nodes.map((n) => [key(n.name, n.type), 0]));
  for (let round = 0; round < m.nodes.length; round++) {
    let moved = false;
    for (const e of m.edges) {
      const a = key(e.from, e.from_type), b = key(e.to, e.to_type);
      if (a !== b && depth.get(b) < depth.get(a) + 1) { depth.set(b, depth.get(a) + 1); moved = true; }
    }
    if (!moved) break;
  }
  const columns = [];
  for (const n of m.nodes) (columns[depth.get(key(n.name, n.type))] ||= []).push(n);
  const row = new Map();
  for (const col of columns.filter(Boolean)) {
    const weight = (n) => {
      const rows = m.edges.filter((e) => key(e.to, e.to_type) === key(n.name, n.type) && row.has(key(e.from, e.from_type)))
        .map((e) => row.get(key(e.from, e.from_type)));
      return rows.length ? rows.reduce((x, y) => x + y, 0) / rows.length : 0;
    };
    col.sort((x, y) => weight(x) - weight(y) || x.name.localeCompare(y.name));
    col.forEach((n, i) => row.set(key(n.name, n.type), i));
  }
  return { depth, columns, row };
}

// drawMap draws the nodes in their layers and each edge with its calls, errors and
// average time; it returns the nodes' columns.
function drawMap(box, m, onEdge) {
  const { depth, columns, row } = layers(m);
  const NW = 160, NH = 48, CW = 330, RH = 120, PAD = 30;
  const pos = new Map();
  for (const [k, d] of depth) pos.set(k, { x: PAD + d * CW, y: PAD + row.get(k) * RH });
  const width = PAD * 2 + (columns.length - 1) * CW + NW;
  const height = PAD * 2 + Math.max(...columns.map((c) => (c ? c.length : 0))) * RH;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Server map" });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
    s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a8" }))));
  for (const e of m.edges) {
    const a = pos.get(nodeKey(e.from, e.from_type)), b = pos.get(nodeKey(e.to, e.to_type));
    // A cubic from the caller's right side to the callee's left side: bowed into the gap
    // below the row when it passes other columns (not through their nodes), below both
    // nodes for a call back to the left. Its label sits at its middle,
    // B(0.5) = (P0 + 3P1 + 3P2 + P3) / 8.
    const back = b.x <= a.x, bow = b.x - a.x > CW ? 60 : 0;
    const p = back
      ? [[a.x + NW / 2, a.y + NH], [a.x + NW / 2, a.y + NH + 50], [b.x + NW / 2, b.y + NH + 50], [b.x + NW / 2, b.y + NH]]
      : [[a.x + NW, a.y + NH / 2], [a.x + NW + 70, a.y + NH / 2 + bow], [b.x - 70, b.y + NH / 2 + bow], [b.x, b.y + NH / 2]];
    const d = `M${p[0]} C${p[1]} ${p[2]} ${p[3]}`;
    // Above a straight edge, below a bowed one (above it are the nodes it passes).
    const mx = (p[0][0] + 3 * p[1][0] + 3 * p[2][0] + p[3][0]) / 8, my = (p[0][1] + 3 * p[1][1] + 3 * p[2][1] + p[3][1]) / 8 + (bow ? 16 : -20);
    const line2 = (e.errors ? `${e.errors} failed · ` : "") + `avg ${fmtMs(e.avg_ms)}`;
    const g = s("g", { class: "edge" + (e.errors ? " failing" : ""), tabindex: "0", role: "button", "data-from": e.from, "data-to": e.to, "data-calls": e.calls,
      "aria-label": `${e.from} to ${e.to}: ${e.calls} calls, ${line2}`,
      onclick: () => pick(g, e), onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(g, e); } } },
    s("path", { d, "marker-end": "url(#arrow)" }),
    s("text", { x: mx, y: my, "text-anchor": "middle", class: "edge-label" },
      s("tspan", { class: "calls" }, `${e.calls} calls`), s("tspan", { x: mx, dy: "15" }, line2)));
    svg.append(g);
  }
  const pick = (g, e) => { svg.querySelectorAll(".edge.sel").forEach((x) => x.classList.remove("sel")); g.classList.add("sel"); onEdge(e); };
  const css = getComputedStyle(document.documentElement);
  for (const n of m.nodes) {
    const p = pos.get(nodeKey(n.name, n.type));
    const color = css.getPropertyValue("--" + n.type).trim() || "#5b6475";
    const name = n.name.length > 22 ? n.name.slice(0, 21) + "…" : n.name;
    svg.append(s("g", { class: "node", transform: `translate(${p.x},${p.y})`, "data-name": n.name, "data-type": n.type },
      s("title", {}, `${n.name} (${n.type})`),
      s("rect", { width: NW, height: NH, rx: 6, stroke: color }),
      s("text", { x: 10, y: 20 }, name),
      s("text", { x: 10, y: 37, class: "type", fill: color }, n.type.toUpperCase())));
  }
  box.replaceChildren(svg);
  return depth;
}

function showEdge(box, e) {
  const buckets = ["1s", "3s", "5s", "Slow", "Error"];
  const top = Math.max(1, ...buckets.map((b) => e.histogram[b]));
  box.replaceChildren(h("h2", {}, `${e.from} → ${e.to}`),
    h("p", {}, `${e.calls} calls, ${e.errors} failed, average ${fmtMs(e.avg_ms)}, max ${fmtMs(e.max_ms)}`),
    h("div", { class: "hist", role: "img", "aria-label": buckets.map((b) => `${b}: ${e.histogram[b]}`).join(", ") },
      buckets.map((b) => h("div", { class: b }, h("span", {}, e.histogram[b]), h("b", { style: `height:${(e.histogram[b] / top) * 80}px` }), h("span", {}, b)))));
}

function edgeTable(edges) {
  const buckets = ["1s", "3s", "5s", "Slow", "Error"];
  return h("table", { class: "list", id: "edges" },
    h("thead", {}, h("tr", {}, ["From", "To", "Calls", "Failed", "Avg", "Max", ...buckets].map((c, i) => h("th", { scope: "col", class: i > 1 ? "num" : "" }, c)))),
    h("tbody", {}, edges.map((e) => h("tr", { "data-from": e.from, "data-to": e.to },
      h("td", {}, e.from), h("td", {}, `${e.to} (${e.to_type})`), h("td", { class: "num" }, e.calls), h("td", { class: "num" }, e.errors),
      h("td", { class: "num" }, fmtMs(e.avg_ms)), h("td", { class: "num" }, fmtMs(e.max_ms)),
      buckets.map((b) => h("td", { class: "num" }, e.histogram[b]))))));
}

// ---------- inspector ----------

const COLORS = ["#1f5fbf", "#d6303a", "#1b8a5a", "#b26a00", "#8a3ab9", "#5b6475"];

function inspectorView(agent, q) {
  const range = rangeOf(q);
  document.title = "Inspector · apmkit explorer";
  const select = h("select", { "aria-label": "Agent" }, h("option", { value: "" }, "Choose an agent…"));
  const r = rangeInputs(range, (nr) => go(select.value, nr));
  const go = (a, nr) => { if (a) navigate(`/inspector/${encodeURIComponent(a)}?from=${nr.from}&to=${nr.to}`); };
  select.addEventListener("change", () => go(select.value, r.value()));
  const form = h("form", { class: "panel range", onsubmit: (e) => { e.preventDefault(); go(select.value, r.value()); } },
    h("label", {}, "Agent", select), h("label", {}, "From", r.from), h("label", {}, "To", r.to), h("label", {}, "Quick range", r.quick),
    h("button", { type: "submit" }, "Show"));
  const info = h("div");
  const box = h("div", { class: "charts" });
  main.append(h("h1", {}, "Inspector", agent ? [" ", h("span", { class: "mono" }, agent)] : ""), form, info, box);
  api("/api/v1/agents").then((d) => {
    for (const a of d.agents) select.append(h("option", { value: a.agent_id }, `${a.app} / ${a.agent_id}`));
    select.value = agent;
    const a = d.agents.find((x) => x.agent_id === agent);
    if (a) {
      info.replaceChildren(h("p", { class: "panel" }, [`Application ${a.app}`, a.hostname && `host ${a.hostname}`, a.ip && `ip ${a.ip}`,
        a.agent_version && `agent ${a.agent_version}`, a.service_type, a.start_ms && `started ${fmtTime(a.start_ms, false)}`,
        a.end_ms && `ended ${fmtTime(a.end_ms, false)}`, a.last_seen_ms && `last data ${fmtTime(a.last_seen_ms, false)}`].filter(Boolean).join(" · ")));
    }
  }).catch((e) => showError(info, e));
  if (!agent) { box.append(h("p", { class: "muted" }, "Choose an agent to see its heap, CPU, GC, threads, TPS, active traces, response time and connection pools.")); return; }
  api("/api/v1/inspector", { agent, from: range.from, to: range.to }).then((d) => {
    if (d.charts.length === 0) { box.replaceChildren(h("p", { class: "muted" }, "No stat samples of this agent in this range.")); return noData(info, range); }
    box.replaceChildren(...d.charts.map((c) => chartCard(c, range)));
  }).catch((e) => showError(box, e));
}

function chartCard(c, range) {
  const W = 600, H = 170, L = 64, R = 8, T = 8, B = 20;
  let top = 0;
  for (const se of c.series) for (const p of se.points) top = Math.max(top, p[1]);
  // Byte axes step in powers of 1024, so the top reads 1 GiB rather than 1.9 GiB.
  const unit = c.unit === "bytes" ? Math.pow(1024, Math.max(0, Math.floor(Math.log(Math.max(top, 1)) / Math.log(1024)))) : 1;
  top = top > 0 ? niceMax(top / unit) * unit : 1;
  const x = (t) => L + ((t - range.from) / Math.max(1, range.to - range.from)) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": c.title });
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }), s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtNum(v, c.unit)));
  }
  svg.append(s("text", { x: L, y: H - 4 }, fmtTime(range.from, false).slice(5)), s("text", { x: W - R, y: H - 4, "text-anchor": "end" }, fmtTime(range.to, false).slice(5)));
  c.series.forEach((se, i) => {
    const color = COLORS[i % COLORS.length];
    svg.append(s("polyline", { stroke: color, points: se.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
    // Few samples (an agent that just started) would be a dash: mark each.
    if (se.points.length <= 60) for (const p of se.points) svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: color }));
  });
  const legend = h("div", { class: "legend" }, c.series.map((se, i) => {
    const last = se.points[se.points.length - 1];
    return h("span", {}, h("i", { class: "dot", style: `background:${COLORS[i % COLORS.length]}` }), `${se.name} ${last ? fmtNum(last[1], c.unit) : ""}`);
  }));
  return h("section", { class: "panel chart", "data-chart": c.name }, h("h3", {}, c.title), svg, legend);
}

render();
