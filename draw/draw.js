// draw.js: what the page does. The server (draw.py) reads the digit; this file lets you draw, sends
// the drawing as a PNG file to POST /predict, and shows the answer. Once the drawing is still, it sends
// the same file to POST /explain (why that digit) and POST /attack (how little change fools the net).
// "A number" widens the pad and sends it to POST /read, which finds every digit; a photo goes there
// too. With draw.py --collect, the page asks for digits in turn and saves each to POST /collect.
// Plain JavaScript, no libraries.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const $ = (id) => document.getElementById(id);

// MNIST's digits fill 20 of 28 pixels with strokes about 2 pixels wide: the same share of this canvas.
const BRUSH = pad.height * 0.08;
const boxes = $("boxes").getContext("2d");  // over the pad: the boxes of the digits found, in number mode
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
let lastFile = null;    // the image whose answer is on the page, once the drawing is still: what /explain
let lastVersion = 0;    // and /attack are asked about, and its version
let reading = null;     // the digit read in it
let pinned = null;      // the digit whose map was asked for by a click on its bar; null: the digit read
let changedRows = null; // the attack's changed 28x28 image, for "Draw over it"

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
  hideNumber();
  collectButtons();
}

function numberMode() { return $("number").checked; }

function setMode() {  // "a number": a pad three times as wide, read by POST /read
  document.body.classList.toggle("wide", numberMode());
  pad.width = $("boxes").width = numberMode() ? 3 * pad.height : pad.height;
  clearPad();
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
$("number").addEventListener("change", setMode);

// ---------------------------------------------------------------- sending: while drawing, throttled

function changed() {
  bump();
  collectButtons();
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
    ask(padAsPng(), version, numberMode() ? "/read" : "/predict");
  }, wait);
}

function padAsPng() {
  // toDataURL encodes at once; toBlob can wait for the browser to be idle, up to a second in Chrome
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], {type: "image/png"});
}

async function ask(file, v, path = "/predict") {
  inFlight = true;
  lastSent = performance.now();
  document.body.dataset.busy = "1";
  let answer;
  try {
    const response = await fetch(path, {
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
    else if (path === "/read") showNumber(answer);
    else show(answer);
    document.body.dataset.shown = String(++answersShown);
    if (!answer.error && path === "/predict" && v === version && !stroking) {  // the drawing is still: why this digit, and an attack
      lastFile = file;
      lastVersion = v;
      reading = answer.digit;
      explainNow();
      attackNow();
    }
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
  hideNumber();
  collectButtons();
  if (info && file.size > info.max_bytes) {
    showError(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the limit of ${info.max_bytes / 1e6} MB: crop or shrink it`);
    document.body.dataset.answered = String(v);
    return;
  }
  // the file itself, not the pad: the server reads it as predict.py would, every digit in it
  if (numberMode()) return ask(file, v, "/read");
  readPhoto(file, v);
  ask(file, v);
}

async function readPhoto(file, v) {  // a photo of several digits: each one boxed and read, as in number mode
  const a = await post("/read", file);
  if (v === version && !a.error && a.digits.length > 1) showNumber(a);
  if (v === version) document.body.dataset.pageRead = String(v);  // the tests wait for this
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

function showBars(where, p, top) {  // ten bars whose widths are the probabilities
  document.querySelectorAll(`${where} .bar`).forEach((bar, d) => {
    bar.querySelector(".fill").style.width = `${100 * p[d]}%`;
    bar.querySelector(".pct").textContent = `${(100 * p[d]).toFixed(1)}%`;
    bar.classList.toggle("top", d === top);
  });
}

function drawSeen(rows, canvas) {  // 28x28 as the net got it: white ink on black, each pixel a visible square
  const c = canvas.getContext("2d"), cell = (canvas.width - 1) / 28;
  c.fillStyle = "#444";
  c.fillRect(0, 0, canvas.width, canvas.height);
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
  shownVersion = lastVersion = version;  // a map or attack still on its way for what was cleared is not shown
  lastFile = changedRows = null;
  pinned = null;
  markPinned();
  $("load").disabled = true;
  $("why-title").textContent = "Why?";
  $("digit").textContent = "?";
  $("confidence").textContent = "draw a digit";
  $("status").textContent = "";
  document.body.classList.add("stale");
  document.body.dataset.answered = String(version);
}

// ---------------------------------------------------------------- why this digit, and how to fool the net

// Requests of which only the newest matters (a map, an attack): one in flight at a time; what is asked
// meanwhile waits, and only the last of it is sent when the answer comes.
function newestOnly(name, send) {
  let busy = false, waiting = null;
  async function go(job) {
    busy = true;
    document.body.dataset[name] = "1";  // the tests wait for it to clear
    try { await send(job); } finally { busy = false; }
    if (waiting) { const next = waiting; waiting = null; go(next); }
    else document.body.dataset[name] = "";
  }
  return (job) => { if (busy) waiting = job; else go(job); };
}

async function post(path, file) {
  try {
    const r = await fetch(path, {method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    return await r.json();
  } catch (err) {
    return {error: "no answer from the server: is python draw.py still running?"};
  }
}

const explain = newestOnly("explaining", async (job) => {
  const a = await post(job.target === null ? "/explain" : `/explain?target=${job.target}`, job.file);
  if (job.v !== lastVersion) return;  // the drawing has changed since: its own request follows
  if (a.error) {
    $("why-status").textContent = a.error;
    return;
  }
  $("why-title").textContent = a.target === a.digit ? `Why ${a.target}?` : `Why not ${a.target}?`;
  drawMap($("why"), a.input, a.integrated_gradients);
  if (a.grad_cam) drawMap($("cam"), a.input, a.grad_cam);
  $("why-status").textContent = `${a.target}'s score: ${a.score.toFixed(2)}, ${a.blank_score.toFixed(2)} for a blank ` +
    `page; the red and blue shares add up to the difference. (${a.milliseconds} ms)`;
  document.body.dataset.why = `${job.v}:${a.target}`;  // the tests wait for the map of a digit
});

function explainNow() {
  if (lastFile) explain({file: lastFile, v: lastVersion, target: pinned});
}

const attack = newestOnly("attacking", async (job) => {
  const a = await post(`/attack?eps=${job.eps}&target=${job.goal}&method=${job.method}`, job.file);
  if (job.v !== lastVersion) return;
  if (a.error) {
    $("attack-status").textContent = a.error;
    return;
  }
  changedRows = a.changed;
  drawSeen(a.input, $("original"));
  drawSeen(a.changed, $("changed"));
  drawChange($("change"), a.input, a.changed, Math.max(a.eps, 1e-6));
  $("fooled-digit").textContent = a.changed_digit;
  const p = a.changed_probabilities;
  $("fooled-text").textContent = `${(100 * p[a.changed_digit]).toFixed(1)}% sure` +
    (a.fooled ? ` · fooled (it read ${a.digit})` : a.changed_digit === a.digit ? " · not fooled" : ` · not yet ${a.target}`);
  showBars("#fooled-bars", p, a.changed_digit);
  $("load").disabled = false;
  $("download").href = pngOf(a.changed);
  $("download").download = `changed-${a.digit}-read-as-${a.changed_digit}-eps-${a.eps}.png`;
  $("attack-status").textContent = `The largest change of a pixel: ${a.largest_change.toFixed(3)}. (${a.milliseconds} ms)`;
  document.body.dataset.attacked = `${job.v}:${job.eps}:${job.goal}:${job.method}`;  // what the tests wait for
});

function attackNow() {
  $("eps-value").textContent = Number($("eps").value).toFixed(2);
  if (lastFile) attack({file: lastFile, v: lastVersion, eps: $("eps").value, goal: $("goal").value, method: $("method").value});
}

$("eps").addEventListener("input", attackNow);
$("goal").addEventListener("change", attackNow);
$("method").addEventListener("change", attackNow);

// Red for a positive value (it raises the digit's score), blue for a negative one, over the digit in light grey.
const RAISES = [214, 39, 40], LOWERS = [31, 100, 200];

function drawMap(canvas, input, map) {
  const c = canvas.getContext("2d"), cell = (canvas.width - 1) / 28;
  const sizes = map.flat().map(Math.abs).sort((a, b) => a - b);
  const scale = Math.max(1e-12, sizes[Math.floor(0.99 * (sizes.length - 1))]);  // the 8th strongest pixel: full colour
  c.fillStyle = "#ddd";
  c.fillRect(0, 0, canvas.width, canvas.height);
  map.forEach((row, y) => row.forEach((a, x) => {
    const base = 255 - 80 * input[y][x], w = Math.min(1, Math.abs(a) / scale), to = a > 0 ? RAISES : LOWERS;
    const [r, g, b] = to.map((t) => Math.round(base * (1 - w) + t * w));
    c.fillStyle = `rgb(${r},${g},${b})`;
    c.fillRect(1 + x * cell, 1 + y * cell, cell - 1, cell - 1);
  }));
}

function drawChange(canvas, before, after, eps) {  // mid grey: unchanged; white: brighter by eps; black: darker
  const c = canvas.getContext("2d"), cell = (canvas.width - 1) / 28;
  c.fillStyle = "#444";
  c.fillRect(0, 0, canvas.width, canvas.height);
  after.forEach((row, y) => row.forEach((v, x) => {
    const g = Math.round(127.5 + 127.5 * Math.max(-1, Math.min(1, (v - before[y][x]) / eps)));
    c.fillStyle = `rgb(${g},${g},${g})`;
    c.fillRect(1 + x * cell, 1 + y * cell, cell - 1, cell - 1);
  }));
}

function grey28(rows, invert) {  // 28x28 values 0..1 as a 28x28 canvas
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  const img = new ImageData(28, 28);
  rows.flat().forEach((v, i) => {
    const g = Math.round(255 * (invert ? 1 - v : v));
    img.data.set([g, g, g, 255], 4 * i);
  });
  small.getContext("2d").putImageData(img, 0, 0);
  return small;
}

function pngOf(rows) { return grey28(rows, false).toDataURL("image/png"); }  // white on black, as the net got it

$("load").addEventListener("click", () => {  // the changed image onto the pad, to draw over it
  if (!changedRows) return;
  ink.imageSmoothingEnabled = false;  // each pixel a sharp square of the pad
  ink.drawImage(grey28(changedRows, !$("chalk").checked), 0, 0, pad.width, pad.height);
  photo = false;
  inked = true;
  changed();
});

// ---------------------------------------------------------------- a number: every digit found, boxed and read

const LINE_COLOURS = ["#d62728", "#1f64c8", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

function showNumber(a) {  // the answer of POST /read: boxes over the pad, the number, each digit's 28x28
  // the image as the pad shows it: itself in number mode, fitted into the pad for a photo
  const s = Math.min(pad.width / a.width, pad.height / a.height);
  const x0 = (pad.width - a.width * s) / 2, y0 = (pad.height - a.height * s) / 2;
  boxes.clearRect(0, 0, pad.width, pad.height);
  boxes.lineWidth = 2;
  boxes.font = "bold 16px system-ui, sans-serif";
  const tiles = [];
  for (const d of a.digits) {
    const [l, t, r, b] = d.box, colour = LINE_COLOURS[(d.line - 1) % LINE_COLOURS.length];
    boxes.strokeStyle = boxes.fillStyle = colour;
    boxes.strokeRect(x0 + l * s, y0 + t * s, (r - l) * s, (b - t) * s);
    boxes.fillText(String(d.digit), x0 + l * s + 2, Math.max(14, y0 + t * s - 3));
    tiles.push(`<figure style="color:${colour}"><canvas width="57" height="57"></canvas>` +
               `${d.digit} · ${(100 * d.probabilities[d.digit]).toFixed(0)}%</figure>`);
  }
  $("number-read").textContent = a.lines.join(" ");
  $("number-digits").innerHTML = tiles.join("");
  $("number-digits").querySelectorAll("canvas").forEach((c, i) => drawSeen(a.digits[i].input, c));
  $("number-notes").textContent = a.notes.join(" · ");
  $("number-panel").hidden = false;
  $("status").textContent = `${a.digits.length} digit${a.digits.length > 1 ? "s" : ""} read in ${a.milliseconds} ms on the server.`;
  $("status").className = "";
  document.body.dataset.number = a.lines.join(" ");  // what the tests read
}

function hideNumber() {
  boxes.clearRect(0, 0, $("boxes").width, $("boxes").height);
  $("number-panel").hidden = true;
  document.body.dataset.number = "";
}

// ---------------------------------------------------------------- collect mode (draw.py --collect DIR)

let counts = null;  // drawings of each digit saved so far (null: collect mode is off)
let wanted = 0;     // the digit asked for
let collected = 0;  // drawings saved since the page opened (the tests wait for it)

function nextWanted() {  // the digit with the fewest saved, the first after the one asked before among equals
  let best = null;
  for (let k = 1; k <= 10; k++) {
    const d = (wanted + k) % 10;
    if (best === null || counts[d] < counts[best]) best = d;
  }
  wanted = best;
  showCounts();
}

function showCounts() {
  $("wanted").textContent = wanted;
  $("count-digits").innerHTML = [...Array(10).keys()].map((d) => `<td${d === wanted ? ' class="wanted"' : ""}>${d}</td>`).join("");
  $("count-saved").innerHTML = [...Array(10).keys()].map((d) => `<td>${counts[d]}</td>`).join("");
  collectButtons();
}

function collectButtons() {  // a drawing of one digit on the square pad can be saved; not a photo, not a number
  if (counts) $("save").disabled = !inked || photo || numberMode();
}

$("save").addEventListener("click", async () => {
  if (!counts || $("save").disabled) return;
  $("save").disabled = true;
  const digit = wanted, a = await post(`/collect?digit=${digit}`, padAsPng());
  if (a.error) {
    $("collect-status").textContent = a.error;
    $("collect-status").className = "hint error";
    collectButtons();
  } else {
    counts = a.counts;
    $("collect-status").textContent = `Saved ${a.saved}: ${counts[digit]} of ${digit} now.`;
    $("collect-status").className = "hint";
    nextWanted();
    clearPad();
  }
  document.body.dataset.collected = String(++collected);
});

$("skip").addEventListener("click", () => { if (counts) { nextWanted(); clearPad(); } });

// ---------------------------------------------------------------- building the page for this checkpoint

function buildBars() {
  for (const where of ["bars", "fooled-bars"]) {
    for (let d = 0; d < 10; d++) {
      $(where).insertAdjacentHTML("beforeend",
        `<div class="bar"><span class="label">${d}</span><span class="track"><span class="fill"></span></span>` +
        `<span class="pct"></span></div>`);
    }
  }
  document.querySelectorAll("#bars .bar").forEach((bar, d) => {
    bar.addEventListener("click", () => {  // why (not) this digit? a second click goes back to the digit read
      pinned = pinned === d ? null : d;
      markPinned();
      explainNow();
    });
  });
  for (let d = 0; d < 10; d++) $("goal").insertAdjacentHTML("beforeend", `<option value="${d}">${d}</option>`);
}

function markPinned() {
  document.querySelectorAll("#bars .bar").forEach((bar, d) => bar.classList.toggle("picked", d === pinned));
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
    `parameters` + (info.members > 1 ? " · the layers shown: the first net's" : ` · epoch ${info.epoch}${acc}`);
  buildLayers();
  if (!info.explain.grad_cam) {
    $("cam-figure").hidden = true;
    $("cam-note").textContent = `${info.model} has no conv layers: Grad-CAM needs their feature maps, so there is ` +
      "none. The map of its input pixels works for any network.";
  } else {
    const [h, w] = info.explain.grad_cam.size;
    $("cam-note").textContent = `Grad-CAM: where the last conv block's feature maps speak for the digit (red) ` +
      `or against it (blue); only as sharp as those maps, ${h}×${w} here.`;
  }
  if (info.collect) {
    counts = info.collect.counts;
    $("collect-folder").textContent = info.collect.folder;
    $("collect").hidden = false;
    wanted = 9;  // so that the first asked for is the first with the fewest: 0 on an empty folder
    nextWanted();
  }
  showEmpty();
  document.body.dataset.ready = "1";
}

start();
