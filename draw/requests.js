// requests.js: what goes to the server. The pad is read while you draw (POST /predict, or /read in number
// mode), throttled, one request at a time; once the drawing is still, the explain panel asks its questions.
import {show, showError} from "./answer.js";
import {collectButtons} from "./collect.js";
import {attackNow, explainNow} from "./explain.js";
import {hooks} from "./hooks.js";
import {showNumber} from "./number.js";
import {bump, padAsPng} from "./pad.js";
import {state} from "./state.js";

const THROTTLE_MS = 120;  // while a stroke goes on, at most one request this often
const NO_SERVER = "no answer from the server: is python draw.py still running?";

export function changed() {  // what is on the pad changed: read it soon
  bump();
  collectButtons();
  sendSoon();
}

function sendSoon() {
  const r = state.requests, p = state.pad;
  if (r.inFlight || r.timer || !p.inked || p.photo || r.sentVersion === p.version) return;
  // during a stroke every THROTTLE_MS at most; at its end at once
  const wait = p.stroking ? Math.max(0, r.lastSent + THROTTLE_MS - performance.now()) : 0;
  r.timer = setTimeout(() => {
    r.timer = null;
    if (r.inFlight || !p.inked || p.photo) return;
    r.sentVersion = p.version;
    ask(padAsPng(), p.version, state.number.wide ? "/read" : "/predict");
  }, wait);
}

export async function post(path, file) {  // the answer's JSON: {"error": "..."} when it could not be read
  try {
    const headers = {"Content-Type": file.type || "application/octet-stream"};
    const r = await fetch(path, {method: "POST", body: file, headers});
    return await r.json();
  } catch (err) {
    return {error: NO_SERVER};
  }
}

export async function ask(file, v, path = "/predict") {  // read the pad's version v (or a photo)
  const r = state.requests;
  r.inFlight = true;
  r.lastSent = performance.now();
  hooks.busy(true);
  const answer = await post(path, file);
  r.inFlight = false;
  hooks.busy(false);
  if (v > r.shownVersion) {  // mid-stroke the drawing has moved on already: show it anyway, it is the newest answer
    r.shownVersion = v;
    if (answer.error) showError(answer.error);
    else if (path === "/read") showNumber(answer);
    else show(answer);
    hooks.shown(++r.answersShown);
    if (!answer.error && path === "/predict" && v === state.pad.version && !state.pad.stroking) {
      state.explain.file = file;  // the drawing is still: why this digit, and an attack
      state.explain.version = v;
      explainNow();
      attackNow();
    }
  }
  if (v === state.pad.version) hooks.answered(v);  // the tests wait for this
  sendSoon();
}

// Requests of which only the newest matters (a map, an attack): one in flight at a time; what is asked
// meanwhile waits, and only the last of it is sent when the answer comes. `line`: where it keeps both.
export function newestOnly(name, line, send) {
  async function go(job) {
    line.busy = true;
    hooks.working(name, true);  // the tests wait for it to clear
    try { await send(job); } finally { line.busy = false; }
    if (line.waiting) { const next = line.waiting; line.waiting = null; go(next); }
    else hooks.working(name, false);
  }
  return (job) => { if (line.busy) line.waiting = job; else go(job); };
}
