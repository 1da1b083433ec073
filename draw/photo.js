// photo.js: a photo, chosen with the file picker or dropped on the page, shown on the pad. The server gets the
// file itself, not the pad (requests.js sends it, on the pad's "photo" event): it reads it as predict.py would,
// as one digit and, in case it holds several, digit by digit.
import {bump, drawPhoto, signal} from "./pad.js";
import {$, state} from "./state.js";

function usePhoto(file) {
  if (!file) return;
  state.pad.photo = true;
  state.pad.inked = false;
  const v = bump();
  drawPhoto(file);
  signal("photo", {file, v});  // requests.js reads it
}

$("file").addEventListener("change", (e) => { usePhoto(e.target.files[0]); e.target.value = ""; });
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dropping"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dropping");
  usePhoto(e.dataTransfer.files[0]);
});
