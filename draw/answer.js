// answer.js: the network's answer on the page: the digit, its ten bars, the 28x28 image it received and
// what each layer computed; the layers' canvases are built once, for the checkpoint GET /info describes.
// Only showing: it reads the state and changes nothing in it (requests.js and explain.js call it).
import {hooks} from "./hooks.js";
import {drawSeen, heat, maxOf} from "./paint.js";
import {$, state} from "./state.js";

export function show(a) {
  const p = a.probabilities;
  $("digit").textContent = a.digit;
  $("confidence").textContent = `${(100 * p[a.digit]).toFixed(1)}% sure`;
  showBars("#bars", p, a.digit);
  drawSeen(a.input, $("seen"));
  a.feature_maps.forEach((maps, b) => {  // one brightness scale per block: strong and weak maps compare
    const scale = maxOf(maps);
    document.querySelectorAll(`#block${b} canvas`).forEach((c, i) => heat(c, maps[i], scale));
  });
  a.dense.forEach((values, k) => {
    const canvas = $(`dense${k}`), rows = [];
    if (!canvas) return;  // an answer before the page was built
    const per = canvas.width;
    for (let i = 0; i < values.length; i += per) rows.push(values.slice(i, i + per));
    heat(canvas, rows, maxOf(values));
  });
  $("status").textContent = `Read in ${a.milliseconds} ms on the server.`;
  $("status").className = "";
  document.body.classList.remove("stale");
}

export function showBars(where, p, top) {  // ten bars whose widths are the probabilities
  document.querySelectorAll(`${where} .bar`).forEach((bar, d) => {
    bar.querySelector(".fill").style.width = `${100 * p[d]}%`;
    bar.querySelector(".pct").textContent = `${(100 * p[d]).toFixed(1)}%`;
    bar.classList.toggle("top", d === top);
  });
}

export function showError(message) {
  $("status").textContent = message;
  $("status").className = "error";
  document.body.classList.add("stale");
}

export function showPinned(digit) {  // the bar of the digit whose map was asked for by a click (null: none)
  document.querySelectorAll("#bars .bar").forEach((bar, d) => bar.classList.toggle("picked", d === digit));
}

export function showEmpty() {  // after Clear: no answer shown
  showPinned(null);
  $("load").disabled = true;
  $("why-title").textContent = "Why?";
  $("digit").textContent = "?";
  $("confidence").textContent = "draw a digit";
  $("status").textContent = "";
  document.body.classList.add("stale");
  hooks.answered(state.pad.version);
}

export function buildBars() {
  for (const where of ["bars", "fooled-bars"]) {
    for (let d = 0; d < 10; d++) {
      $(where).insertAdjacentHTML("beforeend",
        `<div class="bar"><span class="label">${d}</span><span class="track"><span class="fill"></span></span>` +
        `<span class="pct"></span></div>`);
    }
  }
  for (let d = 0; d < 10; d++) $("goal").insertAdjacentHTML("beforeend", `<option value="${d}">${d}</option>`);
}

export function buildLayers() {
  const info = state.info, layers = $("layers");
  info.feature_maps.forEach((block, b) => {
    const [c, h, w] = block.shape;
    const size = w * Math.max(1, Math.round(24 / w));  // every map shown about 24 px wide, in whole pixels
    const html = [`<h3>Block ${b + 1} <span class="layers">${block.layers}</span> ` +
                  `<span class="shape">${c} maps of ${h}×${w}</span></h3><div class="maps" id="block${b}">`];
    for (let i = 0; i < c; i++) {
      html.push(`<canvas class="map" width="${w}" height="${h}" style="width:${size}px" ` +
                `title="map ${i + 1}"></canvas>`);
    }
    layers.insertAdjacentHTML("beforeend", html.join("") + "</div>");
  });
  if (!info.feature_maps.length) {
    $("inside-note").textContent = `${info.model} has no conv blocks: it reads the 784 pixels as one flat list, ` +
      "so there are no feature maps to show. What it has are dense layers:";
  }
  info.dense.forEach((layer, k) => {
    const per = layer.size > 256 ? 32 : 16;  // units per row
    layers.insertAdjacentHTML("beforeend",
      `<h3>Dense${info.dense.length > 1 ? " " + (k + 1) : ""} <span class="layers">${layer.layers}</span> ` +
      `<span class="shape">${layer.size} activations</span></h3>` +
      `<canvas class="dense" id="dense${k}" width="${per}" height="${Math.ceil(layer.size / per)}"></canvas>`);
  });
  if (!info.dense.length) {
    layers.insertAdjacentHTML("beforeend", `<p class="hint">${info.model} has no hidden dense layer: ` +
      "the last block's numbers go straight to the ten outputs.</p>");
  }
}
