// server.js: one request to the server and its answer, for the request modules (requests.js, explain.js,
// collect.js); and a line of requests of which only the newest matters.
import {hooks} from "./hooks.js";

const NO_SERVER = "no answer from the server: is python draw.py still running?";

export async function post(path, file) {  // the answer's JSON: {"error": "..."} when it could not be read
  try {
    const headers = {"Content-Type": file.type || "application/octet-stream"};
    const r = await fetch(path, {method: "POST", body: file, headers});
    return await r.json();
  } catch (err) {
    return {error: NO_SERVER};
  }
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
