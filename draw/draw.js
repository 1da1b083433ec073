// draw.js: what the page does, started here. The server (draw.py) reads the digit; the page lets you
// draw, sends the drawing as a PNG file to POST /predict, and shows the answer. Once the drawing is still,
// it sends the same file to POST /explain (why that digit) and POST /attack (how little change fools the
// net). "A number" widens the pad and sends it to POST /read, which finds every digit; a photo goes there
// too. With draw.py --collect, the page asks for digits in turn and saves each to POST /collect.
//
// Plain JavaScript modules, no libraries, no build step: the browser loads each file as draw.py serves it.
//
// They import one way, down this list (tests/test_page_modules.py checks it): what you do on the page is an
// event, which the request modules listen for; they send, and call the display modules with the answers.
//   request modules, which send and listen:
//     requests.js  reading the pad while you draw (throttled, one request at a time), and a photo
//     explain.js   why this digit (POST /explain) and fooling the net (POST /attack)
//     collect.js   collect mode (draw.py --collect DIR)
//   input modules, which signal each change as an event on the pad:
//     pad.js       drawing on the pad, with any pointer; Clear, white on black, "a number"
//     photo.js     a photo, picked or dropped
//   display modules, which import only the state, the painting and hooks.js:
//     answer.js    the digit, its bars, what the net received, what each layer computed
//     number.js    the digits found by POST /read, boxed over the pad
//   and what all may use:
//     server.js    one request and its answer; a line of requests of which only the newest matters
//     state.js     all the page remembers, in one object: the pad, requests, explain panel, number and collect mode
//     hooks.js     what the tests wait for and read: attributes of <body>, all set there
//     paint.js     numbers as pictures on a canvas
import {buildBars, buildLayers, showEmpty} from "./answer.js";
import {startCollecting} from "./collect.js";
import {hooks} from "./hooks.js";
import {blank} from "./pad.js";
import "./photo.js";
import "./requests.js";
import {$, state} from "./state.js";

async function start() {
  buildBars();
  blank();
  try {
    state.info = await (await fetch("/info")).json();
  } catch (err) {
    $("checkpoint").textContent = "No answer from the server: is python draw.py still running?";
    return;
  }
  const info = state.info;
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
  if (info.collect) startCollecting(info.collect);
  showEmpty();
  hooks.ready();
}

start();
