"use strict";
// The clerk's screen: one screen per step of the purchase flow, shown from the state the agent
// pushes; taps become actions posted to the agent, which feeds them to the same flow as the
// console. Grade values are checked as they are typed (number, range); the price table decides.
const TOKEN = document.querySelector("meta[name=cocoon-token]").content;
const values = {};          // grade field name -> typed text, for the current sale
let fieldNames = "";        // the fields now drawn
let active = null;          // the field the keypad types into
let saleKey = "";           // farmer id of the sale the values belong to
let state = null;

async function act(action, extra) {
  try {
    const reply = await fetch("/action", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Cocoon-Token": TOKEN},
      body: JSON.stringify(Object.assign({action: action}, extra || {})),
    });
    if (!reply.ok) {
      const doc = await reply.json().catch(() => ({error: reply.statusText}));
      showMessage(doc.error || reply.statusText, true);
    }
  } catch (err) {
    showMessage(String(err), true);
  }
}

function showMessage(words, refused) {
  text("message", words);
  $("message").classList.toggle("refused", !!refused);
}

function checkField(f) {
  const v = values[f.name] || "";
  if (v === "") return {ok: false, why: ""};
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v)) return {ok: false, why: L.not_a_number};
  const n = Number(v);
  if (n < Number(f.low) || n > Number(f.high)) return {ok: false, why: L.out_of_range};
  return {ok: true, why: ""};
}

function drawFields(fields) {
  const names = fields.map((f) => f.name).join(",");
  const box = $("fields");
  if (names !== fieldNames) {
    fieldNames = names;
    box.textContent = "";
    for (const f of fields) {
      const b = document.createElement("button");
      b.className = "field";
      b.dataset.name = f.name;
      b.innerHTML = '<span class="f-label"></span><span class="f-value"></span>' +
        '<span class="f-hint"></span>';
      b.querySelector(".f-label").textContent = f.label;
      b.addEventListener("click", () => { active = f.name; drawFieldValues(fields); });
      box.appendChild(b);
    }
    if (!fields.some((f) => f.name === active)) active = fields.length ? fields[0].name : null;
  }
  drawFieldValues(fields);
}

function drawFieldValues(fields) {
  let all = fields.length > 0;
  for (const f of fields) {
    const b = $("fields").querySelector(`[data-name="${f.name}"]`);
    const check = checkField(f);
    all = all && check.ok;
    b.querySelector(".f-value").textContent = (values[f.name] || "") + " " + f.unit;
    b.querySelector(".f-hint").textContent = check.why ||
      L.range.replace("{low}", f.low).replace("{high}", f.high);
    b.classList.toggle("bad", !check.ok && (values[f.name] || "") !== "");
    b.classList.toggle("good", check.ok);
    b.classList.toggle("active", f.name === active);
  }
  $("price-it").disabled = !all;
}

function typeKey(key) {
  if (!active || !state || !state.fields) return;
  let v = values[active] || "";
  if (key === "back") v = v.slice(0, -1);
  else if (v.length < 8) v += key;
  values[active] = v;
  drawFieldValues(state.fields);
}

function drawParts(s) {
  const bar = $("parts");
  bar.textContent = "";
  const advice = [];
  for (const part of s.parts) {
    const chip = document.createElement("span");
    chip.className = "chip " + (part.ok ? "ok" : "bad");
    chip.dataset.part = part.name;
    let words = L[part.name];
    if (part.name === "link" && part.waiting) words += " · " + part.detail;
    chip.textContent = (part.ok ? "● " : "▲ ") + words;
    bar.appendChild(chip);
    if (part.advice) advice.push(part.advice);
  }
  const faults = $("faults");
  faults.textContent = "";
  for (const line of advice) {
    const p = document.createElement("p");
    p.textContent = line;
    faults.appendChild(p);
  }
  show(faults, advice.length > 0);
}

function drawSales(sales, supervisor) {
  text("sales-total", `${L.total}: ${sales.count} · ${sales.net} ${L.kg} · ${sales.amount} ` +
    `${L.yuan} · ${sales.acknowledged}/${sales.count} ✓`);
  text("software", `${L.software}: ${sales.software}`);
  const table = $("sales-table");
  table.textContent = "";
  for (const line of sales.lines.slice().reverse()) {
    const tr = table.insertRow();
    tr.className = "sale " + line.state;
    for (const v of [line.voucher.split("-").slice(-1)[0], line.farmer_id,
      line.net + " " + L.kg, line.amount, line.state_text]) {
      tr.insertCell().textContent = v;
    }
    if (line.state !== "voided") {
      const cell = tr.insertCell();
      cell.appendChild(button("small reprint", L.reprint,
        () => act("reprint", {voucher: line.voucher})));
      // Void and correct: offered while a supervisor is signed in (the flow checks it again).
      if (supervisor && line.state !== "paid") {
        cell.appendChild(button("small void", L.void, () => askWhy("void", line.voucher)));
        cell.appendChild(button("small correct", L.correct,
          () => askWhy("correct", line.voucher)));
      }
    }
  }
  show($("supervisor-only"), !supervisor);
}

function button(className, words, onTap) {
  const b = document.createElement("button");
  b.className = className;
  b.textContent = words;
  b.addEventListener("click", onTap);
  return b;
}

// The supervisor picks the reason for a void or a correction from the list the agent gives.
function askWhy(action, voucher) {
  text("why-title", L[action + "_why"].replace("{voucher}", voucher));
  const list = $("why-reasons");
  list.textContent = "";
  for (const [reason, words] of Object.entries(L.reasons)) {
    list.appendChild(button("reason", words, () => {
      show($("why"), false);
      show($("sales"), false);
      act(action, {voucher: voucher, reason: reason});
    }));
  }
  show($("why"), true);
}

function drawBreakdown(priced) {
  const table = $("breakdown");
  table.textContent = "";
  for (const row of priced.breakdown) {
    const tr = table.insertRow();
    tr.insertCell().textContent = row.label;
    tr.insertCell().textContent = row.value;
  }
}

function render(s) {
  state = s;
  const phase = s.phase;
  document.body.dataset.phase = phase;
  const farmerKey = s.farmer ? s.farmer.id : "";
  if (farmerKey !== saleKey || !s.farmer) {
    for (const k of Object.keys(values)) delete values[k];
    saleKey = farmerKey;
  }
  text("clerk-name", s.clerk ? `${L.clerk}: ${s.clerk.name}` : "");
  text("farmer-line", s.farmer ? `${L.farmer}: ${s.farmer.name} (${s.farmer.id})` : "");
  text("instruction", s.instruction);
  // The flow's last words, unless they only repeat the step's instruction.
  showMessage(s.message.text === s.instruction ? "" : s.message.text, s.message.refused);
  drawParts(s);
  drawSales(s.sales, !!(s.clerk && s.clerk.role === "supervisor"));
  show($("sign-out"), !!s.clerk);
  const w = s.weight;
  show($("weigh"), phase === "weighing");
  text("net-value", w ? w.net : "-");
  text("gross", w ? w.gross : "-");
  text("tare", w ? w.tare : "-");
  text("net", w ? w.net : "-");
  const mark = $("stable-mark");
  mark.textContent = !w ? L.unstable : (w.stable ? "✔ " + L.stable : "≈ " + L.unstable) +
    (w.reason && !w.sale_ok ? " — " + w.reason : "");
  mark.className = w && w.stable && w.sale_ok ? "ok" : "warn";
  show($("grade"), phase === "grading");
  if (phase === "grading") {
    drawFields(s.fields || []);
    if (s.taken) text("instruction", `${s.instruction} — ${L.net} ${s.taken.net} ${L.kg}`);
  } else {
    fieldNames = "";
  }
  const confirming = phase === "confirming" || phase === "confirm-again";
  show($("confirm"), confirming && !!s.priced);
  if (confirming && s.priced) {
    text("amount-big", s.priced.amount);
    drawBreakdown(s.priced);
  }
  show($("voucher"), phase === "ready" && !!s.last_voucher);
  if (s.last_voucher) {
    const v = s.last_voucher;
    text("voucher-line", `${L.voucher} ${v.voucher} · ${v.farmer} · ${v.net} ${L.kg} · ` +
      `${L.grade} ${v.grade} · ${v.amount} ${L.yuan}`);
  }
  show($("cancel"), ["weighing", "grading", "confirming", "confirm-again"].includes(phase));
  show($("confirm-btn"), confirming);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#keypad [data-key]")) {
    b.addEventListener("click", () => typeKey(b.dataset.key));
  }
  $("price-it").addEventListener("click", () => {
    const measurements = {};
    for (const f of state.fields || []) measurements[f.name] = values[f.name];
    act("grade", {measurements: measurements});
  });
  $("confirm-btn").addEventListener("click", () => act("confirm"));
  $("cancel").addEventListener("click", () => act("cancel"));
  $("sign-out").addEventListener("click", () => act("sign-out"));
  $("sales-open").addEventListener("click", () => show($("sales"), true));
  $("sales-close").addEventListener("click", () => show($("sales"), false));
  $("close-day").addEventListener("click", () => { act("close-day"); show($("sales"), false); });
  $("why-cancel").addEventListener("click", () => show($("why"), false));
  follow(render);
});
