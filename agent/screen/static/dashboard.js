"use strict";
// The warehouse monitor's dashboard: the warehouse's state pushed by the agent (follow(), in
// common.js), a day of climate drawn as SVG from /climate, and the monitor's sign-in and
// acknowledgements (POSTed with the session's token; the agent records and signs them).
const TOKEN = document.querySelector('meta[name="cocoon-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
let last = null;          // the last state shown
let lastAt = 0;           // when it arrived (ms, this page's clock)
let staff = "";
let acking = null;        // the alert being acknowledged
let climateStamp = null;

function el(tag, cls, content) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content != null) e.textContent = content;
  return e;
}

async function post(path, body) {
  const reply = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Cocoon-Token": TOKEN},
    body: JSON.stringify(body)});
  let doc = {};
  try { doc = await reply.json(); } catch (e) { doc = {error: String(reply.status)}; }
  if (!reply.ok) throw new Error(doc.error || String(reply.status));
  return doc;
}

function renderAlerts(state) {
  const list = $("alerts");
  list.replaceChildren();
  show($("no-alerts"), state.alerts.length === 0);
  for (const a of state.alerts) {
    const li = el("li", "alert");
    li.dataset.seq = a.seq == null ? "" : a.seq;
    li.dataset.kind = a.kind;
    const head = el("div", "a-head");
    head.append(el("b", "a-title", a.title), el("span", "a-age", a.opened));
    li.append(head, el("p", "a-detail", a.detail));
    if (a.advice) {
      const todo = el("p", "a-advice");
      todo.append(el("b", null, L.what_to_do + ": "), document.createTextNode(a.advice));
      li.append(todo);
    }
    for (const ack of a.acks) {
      li.append(el("p", "a-ack", `${L.acknowledged_by} ${ack.staff} ${ack.at}: ${ack.note}`));
    }
    if (a.seq != null) {
      const b = el("button", "ack small", L.acknowledge);
      b.addEventListener("click", () => openAck(a));
      li.append(b);
    }
    list.append(li);
  }
}

function renderLots(state) {
  const body = $("lots");
  body.replaceChildren();
  show($("no-lots"), state.lots.length === 0);
  show($("lots-table"), state.lots.length > 0);
  for (const lot of state.lots) {
    const tr = el("tr", lot.missing > 0 ? "short" : "");
    tr.dataset.lot = lot.lot;
    tr.append(el("td", "id lot", lot.lot), el("td", "id", lot.pledge || "-"),
              el("td", "n", lot.pledged == null ? "-" : lot.pledged),
              el("td", "n present", lot.present), el("td", "n", lot.unknown),
              el("td", "n gone", lot.gone));
    body.append(tr);
    const row = el("tr", "tags");
    const cell = el("td");
    cell.colSpan = 6;
    const details = el("details");
    details.dataset.lot = lot.lot;
    if (openLots.has(lot.lot)) details.open = true;
    details.addEventListener("toggle", () => {
      if (details.open) openLots.add(lot.lot); else openLots.delete(lot.lot);
    });
    details.append(el("summary", null, `${L.tags} (${lot.bound})`));
    const t = el("table", "tag-list");
    const head = el("tr");
    for (const key of ["tag", "state", "where", "last_seen"]) head.append(el("th", null, L[key]));
    t.append(head);
    for (const tag of lot.tags) {
      const r = el("tr", "tag " + tag.status);
      r.dataset.epc = tag.epc;
      r.append(el("td", "id", tag.epc), el("td", null, tag.status_text),
               el("td", null, tag.where), el("td", "seen", tag.seen));
      t.append(r);
    }
    details.append(t);
    cell.append(details);
    row.append(cell);
    body.append(row);
  }
}
const openLots = new Set();

function renderSite(state) {
  const list = $("site");
  list.replaceChildren();
  const items = state.site.map((s) => [s.label, s.text, s.alarm, s.kind]);
  if (state.siren != null) items.push([L.siren, state.siren_text, state.siren, "siren"]);
  if (state.light != null) items.push([L.light, state.light_text, state.light, "light"]);
  for (const [label, value, alarm, kind] of items) {
    const li = el("li", alarm ? "alarm" : "ok");
    li.dataset.kind = kind;
    li.append(el("span", null, label), el("b", null, value));
    list.append(li);
  }
  const readers = $("readers");
  readers.replaceChildren();
  for (const r of state.readers) {
    const li = el("li", r.ok ? "ok" : "alarm");
    li.dataset.reader = r.name;
    li.append(el("span", null, r.name), el("b", null, r.text), el("small", null, r.seen));
    if (r.advice) li.append(el("small", "advice", r.advice));
    readers.append(li);
  }
  const c = state.climate;
  text("climate-now", c == null ? "-" : c.error ? c.error :
       `${c.temp} °C   ${c.rh} %   ${c.band_text}`);
  $("climate-now").className = c && (c.error || c.band !== "ok") ? "alarm" : "";
}

async function drawClimate() {
  let doc;
  try {
    const reply = await fetch("/climate", {credentials: "same-origin"});
    doc = await reply.json();
  } catch (e) { return; }
  const svg = $("chart");
  svg.replaceChildren();
  const W = 400, H = 150, left = 30, right = 370, top = 8, bottom = 130;
  const x = (t) => left + (right - left) * (t - doc.from) / (doc.to - doc.from);
  const yRh = (h) => bottom - (bottom - top) * h / 100;
  const temps = doc.points.map((p) => p[1]);
  const tLow = Math.min(0, ...temps), tHigh = Math.max(40, ...temps);
  const yT = (t) => bottom - (bottom - top) * (t - tLow) / (tHigh - tLow);
  const add = (tag, attrs, content) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (content != null) e.textContent = content;
    svg.append(e);
    return e;
  };
  add("rect", {x: left, y: yRh(doc.rh_high), width: right - left,
               height: yRh(doc.rh_low) - yRh(doc.rh_high), class: "band"});
  add("line", {x1: left, y1: bottom, x2: right, y2: bottom, class: "axis"});
  for (const h of [0, 50, 100]) {
    add("text", {x: right + 3, y: yRh(h) + 4, class: "rh-label"}, `${h}%`);
  }
  for (const t of [tLow, tHigh]) {
    add("text", {x: 2, y: yT(t) + 4, class: "t-label"}, `${Math.round(t)}°`);
  }
  for (let hours = 0; hours <= 24; hours += 6) {
    const when = new Date((doc.from + hours * 3600) * 1000);
    add("text", {x: x(doc.from + hours * 3600) - 12, y: H - 4, class: "x-label"},
        `${String(when.getHours()).padStart(2, "0")}:${String(when.getMinutes()).padStart(2, "0")}`);
  }
  const line = (f, cls) => {
    if (!doc.points.length) return;
    add("polyline", {class: cls, points: doc.points.map((p) =>
      `${x(p[0]).toFixed(1)},${f(p).toFixed(1)}`).join(" ")});
  };
  line((p) => yRh(p[2]), "rh");
  line((p) => yT(p[1]), "temp");
  const now = doc.points[doc.points.length - 1];     // the latest reading, as a dot
  if (now) {
    add("circle", {cx: x(now[0]), cy: yRh(now[2]), r: 3, class: "rh-dot"});
    add("circle", {cx: x(now[0]), cy: yT(now[1]), r: 3, class: "temp-dot"});
  }
  svg.dataset.points = doc.points.length;
  add("text", {x: left + 4, y: top + 10, class: "temp-key"}, L.temperature);
  add("text", {x: left + 90, y: top + 10, class: "rh-key"}, L.humidity);
}

function render(state) {
  last = state;
  lastAt = Date.now();
  text("device", state.device);
  const short = state.lots.reduce((n, l) => n + l.missing, 0);
  text("counts", state.alerts.length ? `! ${state.alerts.length}` : "");
  document.body.classList.toggle("alerting", state.alerts.length > 0);
  document.body.dataset.alerts = state.alerts.length;
  document.body.dataset.short = short;
  renderAlerts(state);
  renderLots(state);
  renderSite(state);
  const stamp = state.climate ? Math.floor(state.climate.updated / 60) : null;
  if (stamp !== climateStamp) { climateStamp = stamp; drawClimate(); }
  checkStale();
}

function checkStale() {
  // Stale: the agent says its warehouse stopped, or nothing came for too long, or the
  // stream is down (the agent itself stopped).
  const quiet = Date.now() - lastAt > (last ? last.stale_after : 20) * 1000;
  const stale = !last || last.stale || quiet || document.body.classList.contains("disconnected");
  show($("stale"), stale && lastAt > 0);
  document.body.dataset.stale = stale ? "1" : "0";
}

function openAck(alert) {
  acking = alert;
  text("ack-title", alert.title);
  $("ack-note").value = "";
  text("ack-error", "");
  show($("ack-signin"), !staff);
  $("ack-send").disabled = !staff;
  show($("ack-dialog"), true);
}

function setStaff(who) {
  staff = who;
  text("who", who ? `${L.signed_in_as} ${who}` : "");
  show($("sign-in"), !who);
  show($("sign-out"), !!who);
  document.body.dataset.staff = who;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const key of ["preset_checked", "preset_bank", "preset_tech"]) {
    const b = el("button", "small preset", L[key]);
    b.dataset.key = key;
    b.addEventListener("click", () => {
      const note = $("ack-note");
      note.value = note.value ? `${note.value}; ${L[key]}` : L[key];
    });
    $("presets").append(b);
  }
  $("ack-signin").addEventListener("click", () => $("sign-in").click());
  $("ack-cancel").addEventListener("click", () => show($("ack-dialog"), false));
  $("ack-send").addEventListener("click", async () => {
    try {
      await post("/acknowledge", {alert_seq: acking.seq, note: $("ack-note").value});
      show($("ack-dialog"), false);
    } catch (e) { text("ack-error", e.message); }
  });
  $("sign-in").addEventListener("click", () => {
    text("signin-error", "");
    show($("signin-dialog"), true);
    $("staff-id").focus();
  });
  $("signin-cancel").addEventListener("click", () => show($("signin-dialog"), false));
  $("signin-send").addEventListener("click", async () => {
    try {
      const doc = await post("/sign-in", {staff: $("staff-id").value});
      setStaff(doc.staff);
      show($("signin-dialog"), false);
      if (acking && !$("ack-dialog").hidden) openAck(acking);
    } catch (e) { text("signin-error", e.message); }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await post("/sign-out", {}); } finally { setStaff(""); }
  });
  $("ack-note").placeholder = L.note_hint;
  setStaff("");
  follow(render);
  setInterval(checkStale, 1000);
});
