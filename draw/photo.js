// photo.js: a photo, chosen with the file picker or dropped on the page. The server gets the file itself,
// not the pad: it reads it as predict.py would, as one digit and, in case it holds several, digit by digit.
import {showError} from "./answer.js";
import {collectButtons} from "./collect.js";
import {hooks} from "./hooks.js";
import {hideNumber, showNumber} from "./number.js";
import {bump, drawPhoto} from "./pad.js";
import {ask, post} from "./requests.js";
import {$, state} from "./state.js";

function usePhoto(file) {
  if (!file) return;
  state.pad.photo = true;
  state.pad.inked = false;
  const v = bump();
  state.requests.sentVersion = v;
  state.requests.shownVersion = v - 1;  // an answer still on its way for the drawing before is not shown
  drawPhoto(file);
  hideNumber();
  collectButtons();
  const info = state.info;
  if (info && file.size > info.max_bytes) {
    showError(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the limit of ${info.max_bytes / 1e6} MB: ` +
              "crop or shrink it");
    hooks.answered(v);
    return;
  }
  if (state.number.wide) return ask(file, v, "/read");
  readPhoto(file, v);
  ask(file, v);
}

async function readPhoto(file, v) {  // a photo of several digits: each one boxed and read, as in number mode
  const a = await post("/read", file);
  if (v === state.pad.version && !a.error && a.digits.length > 1) showNumber(a);
  if (v === state.pad.version) hooks.pageRead(v);  // the tests wait for this
}

$("file").addEventListener("change", (e) => { usePhoto(e.target.files[0]); e.target.value = ""; });
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dropping"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dropping");
  usePhoto(e.dataTransfer.files[0]);
});
