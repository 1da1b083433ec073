// explain.js: the explain panel, once a drawing is still: why the net read that digit, or any other
// (POST /explain; click a bar), and how little change fools it (POST /attack; ε, target, method).
// requests.js asks it once the drawing is still; "Draw over it" is the pad's (pad.js).
import {showBars, showPinned} from "./answer.js";
import {hooks} from "./hooks.js";
import {drawChange, drawMap, drawSeen, pngOf} from "./paint.js";
import {newestOnly, post} from "./server.js";
import {$, state} from "./state.js";

const explain = newestOnly("explaining", state.explain.explaining, async (job) => {
  const a = await post(job.target === null ? "/explain" : `/explain?target=${job.target}`, job.file);
  if (job.v !== state.explain.version) return;  // the drawing has changed since: its own request follows
  if (a.error) {
    $("why-status").textContent = a.error;
    return;
  }
  $("why-title").textContent = a.target === a.digit ? `Why ${a.target}?` : `Why not ${a.target}?`;
  drawMap($("why"), a.input, a.integrated_gradients);
  if (a.grad_cam) drawMap($("cam"), a.input, a.grad_cam);
  $("why-status").textContent = `${a.target}'s score: ${a.score.toFixed(2)}, ${a.blank_score.toFixed(2)} for a blank ` +
    `page; the red and blue shares add up to the difference. (${a.milliseconds} ms)`;
  hooks.why(job.v, a.target);  // the tests wait for the map of a digit
});

export function explainNow() {
  const e = state.explain;
  if (e.file) explain({file: e.file, v: e.version, target: e.pinned});
}

function pin(digit) {  // the digit whose map is asked for (null: the digit read)
  state.explain.pinned = digit;
  showPinned(digit);
}

const attack = newestOnly("attacking", state.explain.attacking, async (job) => {
  const a = await post(`/attack?eps=${job.eps}&target=${job.goal}&method=${job.method}`, job.file);
  if (job.v !== state.explain.version) return;
  if (a.error) {
    $("attack-status").textContent = a.error;
    return;
  }
  state.explain.changedRows = a.changed;
  drawSeen(a.input, $("original"));
  drawSeen(a.changed, $("changed"));
  drawChange($("change"), a.input, a.changed, Math.max(a.eps, 1e-6));
  $("fooled-digit").textContent = a.changed_digit;
  const p = a.changed_probabilities;
  $("fooled-text").textContent = `${(100 * p[a.changed_digit]).toFixed(1)}% sure` +
    (a.fooled ? ` · fooled (it read ${a.digit})` :
     a.changed_digit === a.digit ? " · not fooled" : ` · not yet ${a.target}`);
  showBars("#fooled-bars", p, a.changed_digit);
  $("load").disabled = false;
  $("download").href = pngOf(a.changed);
  $("download").download = `changed-${a.digit}-read-as-${a.changed_digit}-eps-${a.eps}.png`;
  $("attack-status").textContent =
    `The largest change of a pixel: ${a.largest_change.toFixed(3)}. (${a.milliseconds} ms)`;
  hooks.attacked(job);  // what the tests wait for
});

export function attackNow() {
  const e = state.explain;
  $("eps-value").textContent = Number($("eps").value).toFixed(2);
  if (e.file) {
    attack({file: e.file, v: e.version, eps: $("eps").value, goal: $("goal").value, method: $("method").value});
  }
}

$("eps").addEventListener("input", attackNow);
$("goal").addEventListener("change", attackNow);
$("method").addEventListener("change", attackNow);

$("bars").addEventListener("click", (e) => {  // why (not) this digit? a second click goes back to the digit read
  const bar = e.target.closest(".bar");
  if (!bar) return;
  const d = [...$("bars").children].indexOf(bar);
  pin(state.explain.pinned === d ? null : d);
  explainNow();
});

$("pad").addEventListener("cleared", () => {  // a map or attack still on its way for what was cleared is not shown
  const e = state.explain;
  e.version = state.pad.version;
  e.file = e.changedRows = null;
  pin(null);
});
