// Weir console: one page, hash routes, data from /api/v1/console/* and
// /api/v1/sql. Charts are drawn as SVG here; nothing is fetched from the
// internet.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const main = () => $("#main");
const COLORS = ["#2463eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c"];
let timer = null;
let admin = false;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function fmtNum(n) {
  if (n === null || n === undefined || n === "") return "";
  const x = Number(n);
  if (!isFinite(x)) return esc(n);
  if (Math.abs(x) >= 1e9) return (x / 1e9).toFixed(2) + " G";
  if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(2) + " M";
  if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + " k";
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
function fmtBytes(n) {
  const x = Number(n) || 0;
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = x;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : String(Math.round(v))) + " " + u[i];
}
function fmtTime(ms) {
  const d = new Date(ms);
  if (ms === null || ms === undefined || ms < 0 || isNaN(d.getTime())) return "";
  return d.toISOString().replace("T", " ").replace("Z", "");
}
function fmtDuration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

// Each route() bumps `generation`; an answer that arrives after the user
// moved on throws `Stale`, so an old view never overwrites the new one.
let generation = 0;
class Stale extends Error {}

// Changes send JSON: the server refuses other bodies for them.
async function api(path, opts) {
  const gen = generation;
  if (opts && opts.body && opts.method !== undefined && !/\/api\/v1\/sql/.test(path)) {
    opts = { ...opts, headers: { "Content-Type": "application/json", ...(opts.headers || {}) } };
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  if (gen !== generation) throw new Stale("stale");
  let body;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  if (!r.ok) throw new Error((body && body.error_message) || `${r.status} ${text}`);
  return body;
}
async function sql(q, db = "public") {
  return api(`/api/v1/sql?db=${encodeURIComponent(db)}`, {
    method: "POST", body: q, headers: { Accept: "application/json" },
  });
}

function table(columns, rows, opts = {}) {
  const head = columns.map(c => `<th class="${c.num ? "num" : ""}">${esc(c.title)}</th>`).join("");
  const body = rows.map(r => "<tr>" + columns.map(c => {
    const v = c.get(r);
    return `<td class="${c.num ? "num" : ""}">${c.html ? v : esc(c.num ? fmtNum(v) : v)}</td>`;
  }).join("") + "</tr>").join("");
  const empty = rows.length ? "" : `<tr><td colspan="${columns.length}" class="muted">${esc(opts.empty || "nothing yet")}</td></tr>`;
  return `<table${opts.id ? ` id="${opts.id}"` : ""}><thead><tr>${head}</tr></thead><tbody>${body}${empty}</tbody></table>`;
}
const col = (title, get, more = {}) => ({ title, get: typeof get === "string" ? r => r[get] : get, ...more });

// A line chart: series = [{name, points: [[x, y], ...]}], x in ms.
function lineChart(series, opts = {}) {
  const W = 640, H = 220, L = 56, R = 10, T = 10, B = 24;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) return `<p class="muted">${esc(opts.empty || "no data yet")}</p>`;
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(0, ...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const integers = pts.every(p => Number.isInteger(p[1]));
  const fmtY = opts.bytes ? fmtBytes : integers ? (y => fmtNum(Math.round(y))) : fmtNum;
  const fmtX = opts.xLabel || (x => new Date(x).toISOString().substring(11, 19));
  let svg = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(opts.title || "chart")}">`;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    svg += `<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eef0f4"/><text x="${L - 4}" y="${sy(y) + 4}" text-anchor="end">${esc(fmtY(y))}</text>`;
  }
  svg += `<text x="${L}" y="${H - 6}">${esc(fmtX(x0))}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">${esc(fmtX(x1))}</text>`;
  series.forEach((s, i) => {
    const d = s.points.slice().sort((a, b) => a[0] - b[0]).map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const color = COLORS[i % COLORS.length];
    svg += `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"><title>${esc(s.name)}</title></path>`;
    // Few points (or one): mark each, so a lone value shows.
    if (s.points.length <= 40) {
      svg += s.points.map(p => `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${color}"><title>${esc(s.name)}: ${esc(fmtY(p[1]))}</title></circle>`).join("");
    }
  });
  svg += "</svg>";
  const legend = series.map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)}</span>`).join("");
  return svg + `<div class="legend">${legend}</div>`;
}

// Horizontal bars: items = [{name, value}].
function bars(items, fmt = fmtNum) {
  if (!items.length) return `<p class="muted">no data yet</p>`;
  const max = Math.max(...items.map(i => i.value), 1);
  return `<div class="bars">` + items.map(i =>
    `<div class="row"><div class="name" title="${esc(i.name)}">${esc(i.name)}</div><div class="bar" style="width:${(i.value / max * 55).toFixed(1)}%"></div><div class="value">${esc(fmt(i.value))}</div></div>`
  ).join("") + `</div>`;
}

function card(k, v) { return `<div class="card"><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`; }
function panel(title, html) { return `<div class="panel"><h2>${esc(title)}</h2>${html}</div>`; }

// ---- views ----

function showStatus(o) {
  admin = o.admin;
  $("#status").textContent = `weir ${o.version} · cluster ${o.broker.cluster_id}`;
  // weir broker has no embedded store: no Data or SQL views.
  document.querySelectorAll('header nav a[data-view="data"], header nav a[data-view="sql"]')
    .forEach(a => (a.style.display = o.store ? "" : "none"));
}

async function overview() {
  const o = await api("/api/v1/console/overview");
  showStatus(o);
  const b = o.broker;
  const series = o.series || [];
  const pts = k => series.map(s => [s.t, s[k]]);
  const pipelineSeries = (o.pipelines || []).map(p => ({ name: p.name, points: series.map(s => [s.t, (s.events_per_s || {})[p.name] || 0]) }));
  main().innerHTML = `<h1>Overview</h1>
  <div class="cards" id="overview-cards">
    ${card("Broker", esc(b.bootstrap))}
    ${card("Uptime", esc(fmtDuration(o.uptime_s)))}
    ${card("Data", esc(fmtBytes(b.data_bytes)))}
    ${card("Topics", esc(b.topics))}
    ${card("Partitions", esc(b.partitions))}
    ${card("Messages stored", esc(fmtNum(b.messages)))}
    ${card("Messages in / s", esc(fmtNum(b.messages_in_per_s)))}
    ${card("Messages out / s", esc(fmtNum(b.messages_out_per_s)))}
    ${card("Bytes in / s", esc(fmtBytes(b.bytes_in_per_s)))}
    ${card("Bytes out / s", esc(fmtBytes(b.bytes_out_per_s)))}
    ${card("Connections", esc(b.connections))}
    ${card("Consumer groups", esc(b.groups))}
  </div>
  <div class="grid2" style="margin-top:16px">
    ${panel("Messages in and out per second", lineChart([{ name: "in", points: pts("messages_in_per_s") }, { name: "out", points: pts("messages_out_per_s") }], { title: "messages per second" }))}
    ${panel("Bytes in and out per second", lineChart([{ name: "in", points: pts("bytes_in_per_s") }, { name: "out", points: pts("bytes_out_per_s") }], { bytes: true }))}
    ${panel("Pipeline events stored per second", lineChart(pipelineSeries))}
  </div>
  <h2>Pipelines</h2>
  ${table([
    col("Pipeline", p => `<a href="#/pipelines">${esc(p.name)}</a>`, { html: true }),
    col("Components", "components", { num: true }),
    col("Events / s", "events_per_s", { num: true }),
    col("Stored", "stored", { num: true }),
    col("Errors", "errors", { num: true }),
    col("Lag", "lag", { num: true }),
  ], o.pipelines || [], { id: "pipelines-table", empty: "no pipelines" })}`;
}

async function topics() {
  const t = await api("/api/v1/console/topics");
  const form = admin ? `<form class="inline" id="create-topic">
    <label>Name<input name="name" required></label>
    <label>Partitions<input name="partitions" type="number" value="1" min="1"></label>
    <label>retention.ms<input name="retention" placeholder="broker default"></label>
    <button>Create topic</button></form>` : "";
  main().innerHTML = `<h1>Topics</h1>${form}` + table([
    col("Topic", r => `<a href="#/topics/${encodeURIComponent(r.name)}">${esc(r.name)}</a>${r.internal ? ' <span class="muted">internal</span>' : ""}`, { html: true }),
    col("Partitions", "partitions", { num: true }),
    col("Messages", "messages", { num: true }),
    col("End offsets", "end_offsets", { num: true }),
    col("Size", r => fmtBytes(r.size_bytes)),
    col("Retention", r => r.retention_ms == null ? "forever" : fmtDuration(Math.round(r.retention_ms / 1000))),
    col("Bytes in", r => fmtBytes(r.bytes_in)),
    col("Bytes out", r => fmtBytes(r.bytes_out)),
  ], t.topics, { id: "topics-table", empty: "no topics" });
  const f = $("#create-topic");
  if (f) f.onsubmit = async e => {
    e.preventDefault();
    const configs = f.retention.value ? { "retention.ms": f.retention.value } : {};
    try {
      await api("/api/v1/console/topics", { method: "POST", body: JSON.stringify({ name: f.name.value, partitions: Number(f.partitions.value), configs }) });
      route();
    } catch (err) { alert(err.message); }
  };
}

async function topic(name) {
  const t = await api(`/api/v1/console/topics/${encodeURIComponent(name)}`);
  const del = admin ? `<button class="danger" id="delete-topic">Delete topic</button>` : "";
  main().innerHTML = `<h1>Topic ${esc(t.name)}</h1><p class="muted">id ${esc(t.id)}</p>${del}
  <h2>Partitions</h2>` + table([
    col("Partition", "partition", { num: true }),
    col("Leader", r => r.leader < 0 ? "none" : r.leader, { num: true }),
    col("Replicas", r => r.replicas.join(", ")),
    col("In sync", r => r.isr.length < r.replicas.length ? `${r.isr.join(", ")} (under-replicated)` : r.isr.join(", ")),
    col("Start offset", "log_start_offset", { num: true }),
    col("End offset", "log_end_offset", { num: true }),
    col("High watermark", "high_watermark", { num: true }),
    col("Messages", r => r.log_end_offset - r.log_start_offset, { num: true }),
    col("Size", r => fmtBytes(r.size_bytes)),
    col("Segments", "segments", { num: true }),
  ], t.partitions, { id: "partitions-table" }) + `
  <h2>Messages</h2>
  <form class="inline" id="browse">
    <label>Partition<select name="partition"><option value="">all</option>${t.partitions.map(p => `<option>${p.partition}</option>`).join("")}</select></label>
    <label>From<select name="mode"><option value="latest">latest</option><option value="offset">offset</option><option value="time">time</option></select></label>
    <label>Offset or time<input name="at" placeholder="offset, or 2026-11-22 10:00:00"></label>
    <label>Limit<input name="limit" type="number" value="20" min="1" max="500"></label>
    <button>Show</button>
  </form>
  <div id="messages"></div>
  <h2>Configs</h2>` + table([
    col("Name", "0"), col("Value", "1"),
    col("Source", r => t.overrides && r[0] in t.overrides ? "topic" : "default"),
  ], Object.entries(t.configs), { id: "configs-table" });
  const f = $("#browse");
  f.onsubmit = e => { e.preventDefault(); browse(name, f); };
  const d = $("#delete-topic");
  if (d) d.onclick = async () => {
    if (!confirm(`Delete topic ${name} and all its data?`)) return;
    try { await api(`/api/v1/console/topics/${encodeURIComponent(name)}`, { method: "DELETE" }); location.hash = "#/topics"; }
    catch (err) { alert(err.message); }
  };
  browse(name, f);
}

async function browse(name, f) {
  const q = new URLSearchParams({ limit: f.limit.value || "20" });
  if (f.partition.value !== "") q.set("partition", f.partition.value);
  if (f.mode.value === "offset" && f.at.value) q.set("offset", f.at.value);
  const el = $("#messages");
  if (f.mode.value === "time" && f.at.value) {
    const t = /^\d+$/.test(f.at.value) ? Number(f.at.value) : Date.parse(f.at.value.replace(" ", "T") + (f.at.value.includes("Z") ? "" : "Z"));
    if (isNaN(t)) { el.innerHTML = `<p class="bad">not a time: ${esc(f.at.value)} (use 2026-11-22 10:00:00, UTC, or milliseconds)</p>`; return; }
    q.set("time", String(t));
  }
  el.innerHTML = `<p class="muted">reading…</p>`;
  try {
    const m = await api(`/api/v1/console/topics/${encodeURIComponent(name)}/messages?${q}`);
    // The latest N (also "from" with nothing given) read newest first.
    if (f.mode.value === "latest" || !f.at.value) m.messages.reverse();
    const show = v => v === null ? `<span class="muted">null</span>` : typeof v === "object" ? `<span class="muted">base64</span> ${esc(v.base64)}` : esc(v);
    const partial = m.complete === false ? `<p class="muted">partial: some partitions did not answer in time</p>` : "";
    el.innerHTML = partial + table([
      col("Partition", "partition", { num: true }),
      col("Offset", "offset", { num: true }),
      col("Time (UTC)", r => fmtTime(r.timestamp)),
      col("Key", r => show(r.key), { html: true }),
      col("Headers", r => r.headers.map(h => `${esc(h.key)}=${show(h.value)}`).join("<br>"), { html: true }),
      col("Value", r => `<pre>${r.json ? esc(JSON.stringify(r.json, null, 2)) : show(r.value)}</pre>`, { html: true }),
    ], m.messages, { id: "messages-table", empty: "no messages there" });
  } catch (err) { el.innerHTML = `<p class="bad">${esc(err.message)}</p>`; }
}

async function groups() {
  const g = await api("/api/v1/console/groups");
  main().innerHTML = `<h1>Consumer groups</h1>` + table([
    col("Group", r => `<a href="#/groups/${encodeURIComponent(r.group)}">${esc(r.group)}</a>`, { html: true }),
    col("State", "state"),
    col("Members", "members", { num: true }),
    col("Partitions", "partitions", { num: true }),
    col("Lag", "lag", { num: true }),
  ], g.groups, { id: "groups-table", empty: "no consumer groups" });
}

async function brokers() {
  const b = await api("/api/v1/console/brokers");
  main().innerHTML = `<h1>Brokers</h1><p>This console runs on broker ${esc(b.this)}; the active controller is ${b.controller === null ? "not known (no quorum)" : esc(b.controller)}.</p>` + table([
    col("Id", "id", { num: true }),
    col("Address", "address"),
    col("State", r => r.state === "alive" ? "alive" : `<span class="bad">fenced</span>`, { html: true }),
    col("Controller", r => r.controller ? "yes" : ""),
    col("Partitions led", "partitions_led", { num: true }),
    col("Replicas", "replicas", { num: true }),
    col("Epoch", "epoch", { num: true }),
  ], b.brokers, { id: "brokers-table", empty: "no brokers registered" });
}

async function group(id) {
  const g = await api(`/api/v1/console/groups/${encodeURIComponent(id)}`);
  const topicsOf = [...new Set(g.offsets.map(o => o.topic))];
  const reset = admin && topicsOf.length ? `<form class="inline" id="reset">
    <label>Topic<select name="topic">${topicsOf.map(t => `<option>${esc(t)}</option>`).join("")}</select></label>
    <label>To<input name="to" value="earliest" placeholder="earliest, latest or an offset"></label>
    <button class="danger">Reset offsets</button></form>` : "";
  main().innerHTML = `<h1>Group ${esc(g.group)}</h1>
  <div class="cards">${card("State", esc(g.state || "no members"))}${card("Members", g.members.length)}${card("Assignor", esc(g.assignor || "—"))}${card("Total lag", fmtNum(g.offsets.reduce((a, o) => a + (o.lag || 0), 0)))}</div>
  <h2>Members</h2>` + table([
    col("Member", "member_id"), col("Client", "client_id"), col("Host", "client_host"),
    col("Assignment", r => Object.entries(r.assignment).map(([t, ps]) => `${t}: ${ps.join(", ")}`).join("; ")),
  ], g.members, { id: "members-table", empty: "no members right now" }) + `
  <h2>Offsets and lag</h2>${reset}` + table([
    col("Topic", "topic"), col("Partition", "partition", { num: true }),
    col("Committed", "committed", { num: true }), col("End", "end", { num: true }), col("Lag", "lag", { num: true }),
  ], g.offsets, { id: "offsets-table", empty: "nothing committed" }) +
    panel("Lag over time, per partition", lineChart(
      [...new Set(g.lag_history.flatMap(h => Object.keys(h.partitions)))].map(k => ({ name: k, points: g.lag_history.filter(h => k in h.partitions).map(h => [h.t, h.partitions[k]]) })),
      { empty: "no lag history yet (sampled every 2 s)" }));
  const f = $("#reset");
  if (f) f.onsubmit = async e => {
    e.preventDefault();
    const to = /^\d+$/.test(f.to.value) ? Number(f.to.value) : f.to.value;
    try { await api(`/api/v1/console/groups/${encodeURIComponent(id)}/reset`, { method: "POST", body: JSON.stringify({ topic: f.topic.value, to }) }); route(); }
    catch (err) { alert(err.message); }
  };
}

// The component graph: columns by depth from the sources.
function graph(p) {
  const byId = Object.fromEntries(p.components.map(c => [c.id, c]));
  const depth = {};
  const d = id => {
    if (depth[id] !== undefined) return depth[id];
    depth[id] = 0;
    const c = byId[id];
    const ins = (c ? c.inputs : []).map(i => i.replace(/\.errors$/, ""));
    depth[id] = ins.length ? 1 + Math.max(...ins.map(d)) : 0;
    return depth[id];
  };
  p.components.forEach(c => d(c.id));
  const cols = [];
  p.components.forEach(c => (cols[depth[c.id]] = cols[depth[c.id]] || []).push(c));
  const BW = 190, BH = 58, GX = 60, GY = 16;
  const pos = {};
  // Each column in the order of its inputs' rows, so edges rarely cross.
  const row = {};
  cols.forEach((list, x) => {
    if (x > 0) {
      const key = c => {
        const rows = c.inputs.map(i => row[i.replace(/\.errors$/, "")]).filter(r => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 1e9;
      };
      list.sort((a, b) => key(a) - key(b));
    }
    list.forEach((c, y) => { row[c.id] = y; pos[c.id] = [10 + x * (BW + GX), 10 + y * (BH + GY)]; });
  });
  const W = 20 + cols.length * (BW + GX), H = 20 + Math.max(...cols.map(l => l.length)) * (BH + GY);
  let svg = `<svg class="graph" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`;
  p.components.forEach(c => c.inputs.forEach(i => {
    const from = pos[i.replace(/\.errors$/, "")], to = pos[c.id];
    if (!from || !to) return;
    const [x1, y1, x2, y2] = [from[0] + BW, from[1] + BH / 2, to[0], to[1] + BH / 2];
    svg += `<path d="M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}"${i.endsWith(".errors") ? ' stroke-dasharray="4 3"' : ""}/>`;
  }));
  p.components.forEach(c => {
    const [x, y] = pos[c.id];
    svg += `<g class="component" data-id="${esc(c.id)}"><rect class="${c.role}" x="${x}" y="${y}" width="${BW}" height="${BH}"/>
      <text x="${x + 8}" y="${y + 16}" font-weight="600">${esc(c.id)}</text>
      <text x="${x + 8}" y="${y + 31}">${esc(c.type)} · ${esc(c.role)}</text>
      <text x="${x + 8}" y="${y + 46}">in ${esc(fmtNum(c.events_in))} · out ${esc(fmtNum(c.events_out))}${c.errors ? ` · <tspan fill="#c62828">errors ${esc(fmtNum(c.errors))}</tspan>` : ""}</text></g>`;
  });
  return svg + "</svg>";
}

async function pipelines() {
  const r = await api("/api/v1/console/pipelines");
  main().innerHTML = `<h1>Pipelines</h1>` + (r.pipelines.length ? "" : `<p class="muted">no pipelines</p>`) + r.pipelines.map(p => {
    const samples = p.components.flatMap(c => c.error_samples.map(s => ({ component: c.id, ...s })));
    return `<h2>${esc(p.name)}</h2><div class="panel">${graph(p)}</div>` + table([
      col("Component", "id"), col("Type", "type"), col("Role", "role"), col("Inputs", r => r.inputs.join(", ")),
      col("In", "events_in", { num: true }), col("Out", "events_out", { num: true }),
      col("Errors", "errors", { num: true }), col("Lag", "lag", { num: true }),
    ], p.components) + `<h2>Recent errors and dead letters</h2>` + table([
      col("Time", r => fmtTime(r.t)), col("Component", "component"), col("Error", r => `<pre>${esc(r.error)}</pre>`, { html: true }),
    ], samples.sort((a, b) => b.t - a.t).slice(0, 20), { empty: "no errors" });
  }).join("");
}

// Rows [{t, key, v}] into one series per key (the `top` largest by sum).
function seriesBy(rows, top = 8) {
  const sums = {};
  rows.forEach(r => (sums[r.k] = (sums[r.k] || 0) + Number(r.v)));
  const keys = Object.keys(sums).sort((a, b) => sums[b] - sums[a]).slice(0, top);
  return keys.map(k => ({ name: k || "(unknown)", points: rows.filter(r => r.k === k).map(r => [Number(r.t), Number(r.v)]) }));
}

async function data() {
  main().innerHTML = `<h1>Data</h1>
  <h2>Flow A: sensor readings (kafka_consumer)</h2>
  <div class="grid2"><div class="panel" id="chart-temperature"></div><div class="panel" id="chart-pressure"></div><div class="panel" id="chart-visibility"></div></div>
  <h2>Flow B: web traffic (access_log)</h2>
  <div class="grid2">
    <div class="panel" id="chart-province"></div><div class="panel" id="chart-isp"></div>
    <div class="panel" id="top-ips"></div><div class="panel" id="status-codes"></div>
  </div>`;
  const put = (id, title, html) => { $(id).innerHTML = `<h2>${esc(title)}</h2>${html}`; };
  const fail = (id, title, err) => {
    if (err instanceof Stale) throw err;
    put(id, title, `<p class="muted">${esc(err.message)}</p>`);
  };
  try {
    const rows = await sql("select cast(time as bigint) / 1000000 as t, temperature, pressure, visibility from kafka_consumer order by time desc limit 300");
    for (const k of ["temperature", "pressure", "visibility"]) {
      put(`#chart-${k}`, k, lineChart([{ name: k, points: rows.map(r => [Number(r.t), Number(r[k])]) }], { title: k }));
    }
  } catch (err) { for (const k of ["temperature", "pressure", "visibility"]) fail(`#chart-${k}`, k, err); }
  // The last hour, by minute.
  const window = "where time > (select max(time) from access_log) - interval '1 hour'";
  // Addresses abroad have no province: their country stands in.
  const keys = { province: "case when coalesce(province, '') = '' then coalesce(nullif(country, ''), '(unknown)') else province end", isp: "isp" };
  for (const [key, title] of [["province", "Bandwidth by province"], ["isp", "Bandwidth by ISP"]]) {
    try {
      let rows = await sql(`select cast(date_bin(interval '1 minute', time) as bigint) / 1000000 as t, ${keys[key]} as k, sum(bytes) as v from access_log ${window} group by 1, 2 order by 1`);
      // The current minute is still filling: leave it out once there are others.
      const last = Math.max(...rows.map(r => Number(r.t)));
      if (rows.some(r => Number(r.t) !== last)) rows = rows.filter(r => Number(r.t) !== last);
      put(`#chart-${key}`, title + " (per minute, last hour)", lineChart(seriesBy(rows), { bytes: true, title }));
    } catch (err) { fail(`#chart-${key}`, title, err instanceof Stale ? err : new Error(`${err.message} (province and ISP need an IP database: weir up --geoip FILE)`)); }
  }
  try {
    const rows = await sql("select client_ip, count(*) as requests, sum(bytes) as bytes from access_log group by client_ip order by bytes desc limit 10");
    put("#top-ips", "Top client IPs by bytes", bars(rows.map(r => ({ name: `${r.client_ip} (${r.requests} req)`, value: Number(r.bytes) })), fmtBytes));
  } catch (err) { fail("#top-ips", "Top client IPs", err); }
  try {
    const rows = await sql("select status, count(*) as n from access_log group by status order by n desc");
    put("#status-codes", "Status codes", bars(rows.map(r => ({ name: String(r.status), value: Number(r.n) }))));
  } catch (err) { fail("#status-codes", "Status codes", err); }
}

async function sqlView() {
  const dbs = await api("/api/v1/databases").catch(() => ["public"]);
  main().innerHTML = `<h1>SQL</h1>
  <form id="sql-form">
    <label>Database<select name="db">${(dbs.length ? dbs : ["public"]).map(d => `<option>${esc(d)}</option>`).join("")}</select></label>
    <textarea name="q">select * from kafka_consumer order by time desc limit 20</textarea>
    <div class="inline"><button>Run</button> <label style="flex-direction:row;gap:4px"><input type="checkbox" name="chart"> chart (first column on the x axis)</label></div>
  </form><div id="sql-result"></div>`;
  const f = $("#sql-form");
  f.onsubmit = async e => {
    e.preventDefault();
    const out = $("#sql-result");
    out.innerHTML = `<p class="muted">running…</p>`;
    try {
      const rows = await sql(f.q.value, f.db.value);
      const cols = rows.length ? Object.keys(rows[0]) : [];
      let html = `<p class="muted">${rows.length} rows</p>`;
      if (f.chart.checked && cols.length > 1) {
        const x = cols[0];
        const ys = cols.slice(1).filter(c => rows.every(r => r[c] === null || isFinite(Number(r[c]))));
        // time comes back as RFC 3339 text; other columns as numbers.
        const xv = r => typeof r[x] === "string" ? Date.parse(r[x]) : Number(r[x]);
        const isTime = rows.some(r => typeof r[x] === "string");
        html += `<div class="panel">${lineChart(ys.map(c => ({ name: c, points: rows.map(r => [xv(r), Number(r[c])]).filter(p => isFinite(p[0]) && isFinite(p[1])) })), isTime ? {} : { xLabel: String })}</div>`;
      }
      html += table(cols.map(c => col(c, r => r[c])), rows, { id: "sql-table", empty: "no rows" });
      out.innerHTML = html;
    } catch (err) { out.innerHTML = `<p class="bad">${esc(err.message)}</p>`; }
  };
}

async function route() {
  clearTimeout(timer);
  const mine = ++generation;
  let parts;
  try { parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent); }
  catch (_) { parts = []; }
  // Group names may hold "/": everything after "groups/" is the name.
  if (parts[0] === "groups" && parts.length > 2) parts = ["groups", parts.slice(1).join("/")];
  const view = parts[0] || "overview";
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.dataset.view === view));
  const views = {
    overview: [overview, 2000], topics: [() => parts[1] ? topic(parts[1]) : topics(), 0],
    groups: [() => parts[1] ? group(parts[1]) : groups(), 0], pipelines: [pipelines, 3000],
    brokers: [brokers, 2000],
    data: [data, 0], sql: [sqlView, 0],
  };
  const [fn, every] = views[view] || views.overview;
  try { await fn(); }
  catch (err) {
    if (err instanceof Stale || mine !== generation) return;
    main().innerHTML = `<p class="bad">${esc(err.message)}</p>`;
  }
  // A newer route started meanwhile: it owns the page and the timer.
  if (every && mine === generation) timer = setTimeout(route, every);
}

window.addEventListener("hashchange", route);
api("/api/v1/console/overview").then(showStatus).catch(() => {}).finally(route);
