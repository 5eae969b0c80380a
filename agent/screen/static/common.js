"use strict";
// Shared by the clerk's screen and the farmer's display: the page's words, and the station's
// state pushed by the agent (Server-Sent Events; the browser reconnects by itself and sends
// Last-Event-ID, so it only gets states newer than the one it shows).
const L = JSON.parse(document.getElementById("labels").textContent);

function fillLabels(root) {
  for (const el of (root || document).querySelectorAll("[data-t]")) {
    el.textContent = L[el.dataset.t] || el.dataset.t;
  }
}

function $(id) { return document.getElementById(id); }

function show(el, on) { el.hidden = !on; }

function text(id, value) {
  const el = $(id);
  const v = value == null ? "" : String(value);
  if (el.textContent !== v) el.textContent = v;
}

function follow(onState) {
  const source = new EventSource("/events");
  source.onmessage = (ev) => {
    onState(JSON.parse(ev.data));
    document.body.dataset.stateSeq = ev.lastEventId;
  };
  source.onerror = () => {
    document.body.classList.add("disconnected");
    // The browser retries by itself after a network error, but gives up after an answer
    // that is not a stream (the agent restarting, too many screens): then start again.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => follow(onState), 2000);
  };
  source.onopen = () => { document.body.classList.remove("disconnected"); };
  return source;
}

document.addEventListener("DOMContentLoaded", () => fillLabels());
