// paint.js: numbers as pictures on a canvas: heat maps of the layers, the 28x28 image the net got,
// the maps of why, the change an attack made. Only drawing: no state, no requests.

// A heat-map colour scale (black, purple, orange, pale yellow), as 256 RGB triples.
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
const HEAT = Array.from({length: 256}, (_, i) => {
  const t = i / 255 * (STOPS.length - 1), k = Math.min(Math.floor(t), STOPS.length - 2), f = t - k;
  return STOPS[k].map((c, j) => Math.round(c + f * (STOPS[k + 1][j] - c)));
});

// Red for a positive value (it raises the digit's score), blue for a negative one, over the digit in light grey.
const RAISES = [214, 39, 40], LOWERS = [31, 100, 200];

export function heat(canvas, rows, scale) {  // rows: H x W values; scale: the value shown brightest
  const h = rows.length, w = rows[0].length, img = new ImageData(w, h);
  rows.flat().forEach((v, i) => {
    const c = HEAT[Math.max(0, Math.min(255, Math.round(255 * v / scale)))];
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  });
  canvas.getContext("2d").putImageData(img, 0, 0);
}

export function maxOf(values) { return Math.max(1e-6, ...values.flat(Infinity)); }

export function drawSeen(rows, canvas) {  // 28x28 as the net got it: white ink on black, each pixel a visible square
  const c = canvas.getContext("2d"), cell = (canvas.width - 1) / 28;
  c.fillStyle = "#444";
  c.fillRect(0, 0, canvas.width, canvas.height);
  rows.forEach((row, y) => row.forEach((v, x) => {
    const g = Math.round(255 * v);
    c.fillStyle = `rgb(${g},${g},${g})`;
    c.fillRect(1 + x * cell, 1 + y * cell, cell - 1, cell - 1);
  }));
}

export function drawMap(canvas, input, map) {
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

export function drawChange(canvas, before, after, eps) {  // mid grey: unchanged; white: brighter by eps; black: darker
  const c = canvas.getContext("2d"), cell = (canvas.width - 1) / 28;
  c.fillStyle = "#444";
  c.fillRect(0, 0, canvas.width, canvas.height);
  after.forEach((row, y) => row.forEach((v, x) => {
    const g = Math.round(127.5 + 127.5 * Math.max(-1, Math.min(1, (v - before[y][x]) / eps)));
    c.fillStyle = `rgb(${g},${g},${g})`;
    c.fillRect(1 + x * cell, 1 + y * cell, cell - 1, cell - 1);
  }));
}

export function grey28(rows, invert) {  // 28x28 values 0..1 as a 28x28 canvas
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

export function pngOf(rows) { return grey28(rows, false).toDataURL("image/png"); }  // white on black, as the net got it
