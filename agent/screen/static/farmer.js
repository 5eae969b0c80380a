"use strict";
// The farmer's display: the same sale as the clerk's screen, in large digits.
document.addEventListener("DOMContentLoaded", () => {
  follow((s) => {
    text("f-name", s.farmer ? s.farmer.name + " (" + s.farmer.id + ")" : L.no_sale);
    const w = s.taken || s.weight;
    text("f-net", w ? w.net : "-");
    const live = s.weight;
    text("f-stable", s.farmer && live ? (live.stable ? L.stable : L.unstable) : "");
    $("f-stable").className = live && live.stable ? "ok" : "warn";
    text("f-grade", s.priced ? s.priced.grade : "-");
    text("f-price", s.priced ? s.priced.unit_price : "-");
    text("f-amount", s.priced ? s.priced.amount : "-");
  });
});
