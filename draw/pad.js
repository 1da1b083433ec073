// pad.js: the pad you draw on, with any pointer (mouse, pen, finger); Clear, white on black, "a number".
// Only this module paints on the pad: a drawing, a photo, or an attacked image to draw over ("Draw over it").
// It sends nothing: each change is an event on the pad, which the request modules listen for:
//   "changed"   what is drawn changed (requests.js reads it soon)
//   "cleared"   the pad was cleared (the answers to what was on it are not shown)
//   "photo"     photo.js put a photo on it (event.detail: {file, v})
import {hooks} from "./hooks.js";
import {$, state} from "./state.js";
import {grey28} from "./paint.js";

const pad = $("pad");
const ink = pad.getContext("2d");

// MNIST's digits fill 20 of 28 pixels with strokes about 2 pixels wide: the same share of this canvas.
const BRUSH = pad.height * 0.08;

function paper() { return $("chalk").checked ? "#000" : "#fff"; }

export function bump() {  // the pad changed; the tests wait for data-answered to reach data-version
  hooks.version(++state.pad.version);
  return state.pad.version;
}

export function signal(name, detail = null) { pad.dispatchEvent(new CustomEvent(name, {detail})); }

function changed() {  // what is on the pad changed: read it soon
  bump();
  signal("changed");
}

export function blank() { ink.fillStyle = paper(); ink.fillRect(0, 0, pad.width, pad.height); }

export function clearPad() {
  blank();
  state.pad.inked = state.pad.photo = false;
  bump();
  signal("cleared");
}

function setMode() {  // "a number": a pad three times as wide, read by POST /read
  state.number.wide = $("number").checked;
  document.body.classList.toggle("wide", state.number.wide);
  pad.width = $("boxes").width = state.number.wide ? 3 * pad.height : pad.height;
  clearPad();
}

function point(e) {  // page pixels -> canvas pixels (the canvas may be shown smaller or larger)
  const r = pad.getBoundingClientRect();
  return {x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height};
}

function strokeTo(p) {
  const last = state.pad.last;
  ink.strokeStyle = $("chalk").checked ? "#fff" : "#000";
  ink.lineWidth = BRUSH;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(last.x, last.y);
  ink.lineTo(p.x, p.y);
  ink.stroke();
  state.pad.last = p;
}

pad.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  if (state.pad.photo) clearPad();
  pad.setPointerCapture(e.pointerId);  // the stroke goes on even if the pointer leaves the canvas
  state.pad.stroking = state.pad.inked = true;
  const last = state.pad.last = point(e);
  ink.fillStyle = $("chalk").checked ? "#fff" : "#000";
  ink.beginPath();  // a dot where the pen lands (a line of length 0 would draw nothing)
  ink.arc(last.x, last.y, BRUSH / 2, 0, 2 * Math.PI);
  ink.fill();
  changed();
});

pad.addEventListener("pointermove", (e) => {
  if (!state.pad.stroking) return;
  // a fast pen reports several positions per frame: draw through all of them
  const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
  for (const ev of events) strokeTo(point(ev));
  changed();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!state.pad.stroking) return;
    state.pad.stroking = false;
    changed();
  });
}

$("clear").addEventListener("click", clearPad);
$("chalk").addEventListener("change", clearPad);
$("number").addEventListener("change", setMode);

export function padAsPng() {
  // toDataURL encodes at once; toBlob can wait for the browser to be idle, up to a second in Chrome
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], {type: "image/png"});
}

export async function drawPhoto(file) {  // shows the photo on the pad, fitted; only for you to see
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  try {
    const img = await createImageBitmap(file);
    const s = Math.min(pad.width / img.width, pad.height / img.height);
    const w = img.width * s, h = img.height * s;
    ink.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (err) { /* not an image the browser can show: the server's answer says what is wrong */ }
}

function drawOver(rows) {  // the attack's changed image onto the pad, to draw over it
  ink.imageSmoothingEnabled = false;  // each pixel a sharp square of the pad
  ink.drawImage(grey28(rows, !$("chalk").checked), 0, 0, pad.width, pad.height);
  state.pad.photo = false;
  state.pad.inked = true;
  changed();
}

$("load").addEventListener("click", () => {  // "Draw over it": the changed image onto the pad, read afresh
  if (state.explain.changedRows) drawOver(state.explain.changedRows);
});
