// number.js: number mode ("a number": the pad three times as wide) and photos of several digits: the answer
// of POST /read, every digit found boxed over the pad in its line's colour, and each as the net got it.
// Only showing: requests.js calls it with the answers.
import {hooks} from "./hooks.js";
import {drawSeen} from "./paint.js";
import {$} from "./state.js";

const pad = $("pad");
const boxes = $("boxes").getContext("2d");  // over the pad: the boxes of the digits found
const LINE_COLOURS = ["#d62728", "#1f64c8", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

export function showNumber(a) {  // the answer of POST /read: boxes over the pad, the number, each digit's 28x28
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
  const digits = `${a.digits.length} digit${a.digits.length > 1 ? "s" : ""}`;
  $("status").textContent = `${digits} read in ${a.milliseconds} ms on the server.`;
  $("status").className = "";
  hooks.number(a.lines.join(" "));  // what the tests read
}

export function hideNumber() {
  boxes.clearRect(0, 0, $("boxes").width, $("boxes").height);
  $("number-panel").hidden = true;
  hooks.number("");
}
