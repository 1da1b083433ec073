// requests.js: reading what is on the pad. It listens to the pad (pad.js, photo.js signal each change) and
// reads the pad while you draw (POST /predict, or /read in number mode), throttled, one request at a time;
// a photo as one digit and as a page (/read); once the drawing is still, the explain panel asks its questions.
import {show, showEmpty, showError} from "./answer.js";
import {attackNow, explainNow} from "./explain.js";
import {hooks} from "./hooks.js";
import {hideNumber, showNumber} from "./number.js";
import {padAsPng} from "./pad.js";
import {post} from "./server.js";
import {$, state} from "./state.js";

const THROTTLE_MS = 120;  // while a stroke goes on, at most one request this often

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

async function ask(file, v, path = "/predict") {  // read the pad's version v (or a photo)
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

function readPhoto({file, v}) {  // a photo, as one digit and, in case it holds several, digit by digit
  state.requests.sentVersion = v;
  state.requests.shownVersion = v - 1;  // an answer still on its way for the drawing before is not shown
  hideNumber();
  const info = state.info;
  if (info && file.size > info.max_bytes) {
    showError(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the limit of ${info.max_bytes / 1e6} MB: ` +
              "crop or shrink it");
    hooks.answered(v);
    return;
  }
  if (state.number.wide) return ask(file, v, "/read");
  readPage(file, v);
  ask(file, v);
}

async function readPage(file, v) {  // a photo of several digits: each one boxed and read, as in number mode
  const a = await post("/read", file);
  if (v === state.pad.version && !a.error && a.digits.length > 1) showNumber(a);
  if (v === state.pad.version) hooks.pageRead(v);  // the tests wait for this
}

function forget() {  // after Clear: answers to what was cleared are not shown
  state.requests.shownVersion = state.pad.version;
  showEmpty();
  hideNumber();
}

$("pad").addEventListener("changed", sendSoon);  // what is on the pad changed: read it soon
$("pad").addEventListener("cleared", forget);
$("pad").addEventListener("photo", (e) => readPhoto(e.detail));
