// collect.js: collect mode (draw.py --collect DIR): the page asks for each digit in turn, the one with the
// fewest saved first, and saves your drawing of it with POST /collect?digit=7. It listens to the pad's
// changes (pad.js) to let Save be pressed or not.
import {hooks} from "./hooks.js";
import {clearPad, padAsPng} from "./pad.js";
import {post} from "./server.js";
import {$, state} from "./state.js";

export function startCollecting(collect) {  // GET /info's "collect": the folder and the counts saved before
  state.collect.counts = collect.counts;
  $("collect-folder").textContent = collect.folder;
  $("collect").hidden = false;
  state.collect.wanted = 9;  // so that the first asked for is the first with the fewest: 0 on an empty folder
  nextWanted();
}

function nextWanted() {  // the digit with the fewest saved, the first after the one asked before among equals
  const c = state.collect;
  let best = null;
  for (let k = 1; k <= 10; k++) {
    const d = (c.wanted + k) % 10;
    if (best === null || c.counts[d] < c.counts[best]) best = d;
  }
  c.wanted = best;
  showCounts();
}

function showCounts() {
  const c = state.collect;
  $("wanted").textContent = c.wanted;
  const cell = (d) => `<td${d === c.wanted ? ' class="wanted"' : ""}>${d}</td>`;
  $("count-digits").innerHTML = [...Array(10).keys()].map(cell).join("");
  $("count-saved").innerHTML = [...Array(10).keys()].map((d) => `<td>${c.counts[d]}</td>`).join("");
  collectButtons();
}

function collectButtons() {  // a drawing of one digit on the square pad can be saved; not a photo, not a number
  if (state.collect.counts) $("save").disabled = !state.pad.inked || state.pad.photo || state.number.wide;
}

$("save").addEventListener("click", async () => {
  const c = state.collect;
  if (!c.counts || $("save").disabled) return;
  $("save").disabled = true;
  const digit = c.wanted, a = await post(`/collect?digit=${digit}`, padAsPng());
  if (a.error) {
    $("collect-status").textContent = a.error;
    $("collect-status").className = "hint error";
    collectButtons();
  } else {
    c.counts = a.counts;
    $("collect-status").textContent = `Saved ${a.saved}: ${c.counts[digit]} of ${digit} now.`;
    $("collect-status").className = "hint";
    nextWanted();
    clearPad();
  }
  hooks.collected(++c.saved);
});

$("skip").addEventListener("click", () => { if (state.collect.counts) { nextWanted(); clearPad(); } });

for (const change of ["changed", "cleared", "photo"]) $("pad").addEventListener(change, collectButtons);
