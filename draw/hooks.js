// hooks.js: what the tests (tests/test_draw.py, tests/test_collect.py) wait for and read, all here.
// Each is an attribute of <body> (data-version, data-answered, ...): the tests read document.body.dataset,
// and you can watch them change in the browser's inspector as you draw. Nothing on the page reads them.

function set(name, value) { document.body.dataset[name] = String(value); }

export const hooks = {
  ready() { set("ready", "1"); },                      // the page is built for the checkpoint
  version(v) { set("version", v); },                   // goes up at every change of the pad
  answered(v) { set("answered", v); },                 // the pad's version whose reading has come (or needs none)
  busy(on) { set("busy", on ? "1" : ""); },            // a reading of the pad is on its way
  shown(n) { set("shown", n); },                       // answers shown since the page opened
  pageRead(v) { set("pageRead", v); },                 // a photo's POST /read has come, for version v
  number(text) { set("number", text); },               // the number read, in number mode or in a photo
  working(name, on) { set(name, on ? "1" : ""); },     // "explaining", "attacking": a request on its way
  why(v, target) { set("why", `${v}:${target}`); },    // the map of `target` is shown, for version v
  attacked(job) { set("attacked", `${job.v}:${job.eps}:${job.goal}:${job.method}`); },  // this attack is shown
  collected(n) { set("collected", n); },               // answers to Save since the page opened
};
