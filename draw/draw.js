// draw.js: what the page does. The server (draw.py) reads the digit; this file lets you draw, sends
// the drawing as a PNG file to POST /predict, and shows the answer. Plain JavaScript, no libraries.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const $ = (id) => document.getElementById(id);

// MNIST's digits fill 20 of 28 pixels with strokes about 2 pixels wide: the same share of this canvas.
const BRUSH = pad.width * 0.08;
const THROTTLE_MS = 120;  // while a stroke goes on, at most one request this often

let info = null;        // GET /info: the checkpoint and its layers
let version = 0;        // goes up at every change of what is on the pad
let sentVersion = 0;    // the version last sent
let shownVersion = 0;   // the version whose answer is on the page
let answersShown = 0;   // answers shown since the page opened (the tests check that some come mid-drawing)
let inFlight = false;   // at most one request at a time: the next one waits for the answer
let lastSent = 0;
let timer = null;
let stroking = false;
let inked = false;      // anything drawn since Clear?
let photo = false;      // the pad shows a photo (a new stroke starts a new drawing)
let last = null;

// ---------------------------------------------------------------- drawing, with any pointer

function paper() { return $("chalk").checked ? "#000" : "#fff"; }

function bump() {  // the pad changed; the tests wait for data-answered to reach data-version
  document.body.dataset.version = String(++version);
  return version;
}

function clearPad() {
  ink.fillStyle = paper();
  ink.fillRect(0, 0, pad.width, pad.height);
  inked = photo = false;
  bump();
  showEmpty();
}

function point(e) {  // page pixels -> canvas pixels (the canvas may be shown smaller or larger)
  const r = pad.getBoundingClientRect();
  return {x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height};
}

function strokeTo(p) {
  ink.strokeStyle = $("chalk").checked ? "#fff" : "#000";
  ink.lineWidth = BRUSH;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(last.x, last.y);
  ink.lineTo(p.x, p.y);
  ink.stroke();
  last = p;
}

pad.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  if (photo) clearPad();
  pad.setPointerCapture(e.pointerId);  // the stroke goes on even if the pointer leaves the canvas
  stroking = inked = true;
  last = point(e);
  ink.fillStyle = $("chalk").checked ? "#fff" : "#000";
  ink.beginPath();  // a dot where the pen lands (a line of length 0 would draw nothing)
  ink.arc(last.x, last.y, BRUSH / 2, 0, 2 * Math.PI);
  ink.fill();
  changed();
});

pad.addEventListener("pointermove", (e) => {
  if (!stroking) return;
  // a fast pen reports several positions per frame: draw through all of them
  const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
  for (const ev of events) strokeTo(point(ev));
  changed();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!stroking) return;
    stroking = false;
    changed();
  });
}

$("clear").addEventListener("click", clearPad);
$("chalk").addEventListener("change", clearPad);

// ---------------------------------------------------------------- sending: while drawing, throttled

function changed() {
  bump();
  sendSoon();
}

function sendSoon() {
  if (inFlight || timer || !inked || photo || sentVersion === version) return;
  // during a stroke every THROTTLE_MS at most; at its end at once
  const wait = stroking ? Math.max(0, lastSent + THROTTLE_MS - performance.now()) : 0;
  timer = setTimeout(() => {
    timer = null;
    if (inFlight || !inked || photo) return;
    sentVersion = version;
    ask(padAsPng(), version);
  }, wait);
}

function padAsPng() {
  // toDataURL encodes at once; toBlob can wait for the browser to be idle, up to a second in Chrome
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], {type: "image/png"});
}

async function ask(file, v) {
  inFlight = true;
  lastSent = performance.now();
  document.body.dataset.busy = "1";
  let answer;
  try {
    const response = await fetch("/predict", {
      method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    answer = await response.json();  // {"error": "..."} when the server could not read it
  } catch (err) {
    answer = {error: "no answer from the server: is python draw.py still running?"};
  }
  inFlight = false;
  document.body.dataset.busy = "";
  if (v > shownVersion) {  // mid-stroke the drawing has moved on already: show it anyway, it is the newest answer
    shownVersion = v;
    if (answer.error) showError(answer.error);
    else show(answer);
    document.body.dataset.shown = String(++answersShown);
  }
  if (v === version) document.body.dataset.answered = String(v);  // the tests wait for this
  sendSoon();
}

// ---------------------------------------------------------------- a photo: file picker or drop

function usePhoto(file) {
  if (!file) return;
  photo = true;
  inked = false;
  const v = bump();
  sentVersion = v;
  shownVersion = v - 1;  // an answer still on its way for the drawing before is not shown
  drawPhoto(file);
  if (info && file.size > info.max_bytes) {
    showError(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the limit of ${info.max_bytes / 1e6} MB: crop or shrink it`);
    document.body.dataset.answered = String(v);
    return;
  }
  ask(file, v);  // the file itself, not the pad: the server reads it as predict.py would
}

async function drawPhoto(file) {  // shows the photo on the pad, fitted; only for you to see
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  try {
    const img = await createImageBitmap(file);
    const s = Math.min(pad.width / img.width, pad.height / img.height);
    ink.drawImage(img, (pad.width - img.width * s) / 2, (pad.height - img.height * s) / 2, img.width * s, img.height * s);
  } catch (err) { /* not an image the browser can show: the server's answer says what is wrong */ }
}

$("file").addEventListener("change", (e) => { usePhoto(e.target.files[0]); e.target.value = ""; });
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dropping"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dropping");
  usePhoto(e.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- showing the answer

// A heat-map colour scale (black, purple, orange, pale yellow), as 256 RGB triples.
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
const HEAT = Array.from({length: 256}, (_, i) => {
  const t = i / 255 * (STOPS.length - 1), k = Math.min(Math.floor(t), STOPS.length - 2), f = t - k;
  return STOPS[k].map((c, j) => Math.round(c + f * (STOPS[k + 1][j] - c)));
});

function heat(canvas, rows, scale) {  // rows: H x W values; scale: the value shown brightest
  const h = rows.length, w = rows[0].length, img = new ImageData(w, h);
  rows.flat().forEach((v, i) => {
    const c = HEAT[Math.max(0, Math.min(255, Math.round(255 * v / scale)))];
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  });
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function maxOf(values) { return Math.max(1e-6, ...values.flat(Infinity)); }

function show(a) {
  const p = a.probabilities;
  $("digit").textContent = a.digit;
  $("confidence").textContent = `${(100 * p[a.digit]).toFixed(1)}% sure`;
  document.querySelectorAll("#bars .bar").forEach((bar, d) => {
    bar.querySelector(".fill").style.width = `${100 * p[d]}%`;
    bar.querySelector(".pct").textContent = `${(100 * p[d]).toFixed(1)}%`;
    bar.classList.toggle("top", d === a.digit);
  });
  drawSeen(a.input);
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

function drawSeen(rows) {  // 28x28 as the net got it: white ink on black, each pixel a visible square
  const c = $("seen").getContext("2d"), cell = ($("seen").width - 1) / 28;
  c.fillStyle = "#444";
  c.fillRect(0, 0, $("seen").width, $("seen").height);
  rows.forEach((row, y) => row.forEach((v, x) => {
    const g = Math.round(255 * v);
    c.fillStyle = `rgb(${g},${g},${g})`;
    c.fillRect(1 + x * cell, 1 + y * cell, cell - 1, cell - 1);
  }));
}

function showError(message) {
  $("status").textContent = message;
  $("status").className = "error";
  document.body.classList.add("stale");
}

function showEmpty() {  // after Clear: answers to what was cleared are not shown
  shownVersion = version;
  $("digit").textContent = "?";
  $("confidence").textContent = "draw a digit";
  $("status").textContent = "";
  document.body.classList.add("stale");
  document.body.dataset.answered = String(version);
}

// ---------------------------------------------------------------- building the page for this checkpoint

function buildBars() {
  for (let d = 0; d < 10; d++) {
    $("bars").insertAdjacentHTML("beforeend",
      `<div class="bar"><span class="label">${d}</span><span class="track"><span class="fill"></span></span>` +
      `<span class="pct"></span></div>`);
  }
}

function buildLayers() {
  const layers = $("layers");
  info.feature_maps.forEach((block, b) => {
    const [c, h, w] = block.shape;
    const size = w * Math.max(1, Math.round(24 / w));  // every map shown about 24 px wide, in whole pixels
    const html = [`<h3>Block ${b + 1} <span class="layers">${block.layers}</span> ` +
                  `<span class="shape">${c} maps of ${h}×${w}</span></h3><div class="maps" id="block${b}">`];
    for (let i = 0; i < c; i++) {
      html.push(`<canvas class="map" width="${w}" height="${h}" style="width:${size}px" title="map ${i + 1}"></canvas>`);
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

async function start() {
  buildBars();
  ink.fillStyle = paper();
  ink.fillRect(0, 0, pad.width, pad.height);
  try {
    info = await (await fetch("/info")).json();
  } catch (err) {
    $("checkpoint").textContent = "No answer from the server: is python draw.py still running?";
    return;
  }
  const acc = info.val_acc == null ? "" : ` · validation accuracy ${(100 * info.val_acc).toFixed(2)}%`;
  $("checkpoint").textContent = `${info.checkpoint} · ${info.model}, ${info.parameters.toLocaleString("en")} ` +
    `parameters · epoch ${info.epoch}${acc}`;
  buildLayers();
  showEmpty();
  document.body.dataset.ready = "1";
}

start();
