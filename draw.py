"""Draw a digit in the browser and watch the network you trained read it, layer by layer.

    python draw.py                          # serves http://127.0.0.1:8000 and opens it in the browser
    python draw.py --checkpoint other.pth --port 0 --no-browser     # port 0: any free port
    python draw.py --host 0.0.0.0           # share it on the local network (a class, phones)
    python draw.py --checkpoint a.pth b.pth c.pth   # an ensemble reads; the layers shown are the first net's
    python draw.py --collect my_digits/     # the page asks for digits in turn and saves each into my_digits/7/...

The page is plain files in draw/ (no internet needed, no build step). It sends the drawing, or a photo, to
this server as an image file; the server reads it exactly as predict.py reads a file (reading/pages.py),
runs the net once, keeping what each layer hands on, and answers with JSON. Once the drawing is
still, the page also asks why the net read that digit (or any other: click its bar) and shows how
little change to the pixels makes it read another (docs/draw.md, docs/explain.md).
Python's standard library serves it: no web framework.

    GET  /            the page (and its scripts and style: ASSETS below)
    GET  /info        JSON: the checkpoint (file, model, epoch, validation accuracy), the layers shown, and
                      "explain": Grad-CAM's map size (null without conv layers), the steps, the largest ε
    POST /predict     body: an image file (Content-Type image/png, image/jpeg, ...)
                      200 {"digit", "probabilities", "input": 28x28, "feature_maps", "dense", "milliseconds"}
                      400 {"error": "one line"} for a body that is no usable image; 413 over 10 MB
    POST /explain?target=7                   body: an image file, as for /predict; target: a digit, by
                      default the one read. Why the net gives `target` the score it does (inside/explain.py):
                      200 {"digit", "probabilities", "input", "target", "score", "blank_score",
                           "integrated_gradients": 28x28, "grad_cam": 28x28 or null, "milliseconds"}
    POST /attack?eps=0.1&target=any&method=pgd     body: an image file. Every pixel (0..1) moves by at
                      most eps (0 to 1, default 0.1), away from the digit read (target=any, the default)
                      or towards target (a digit), by PGD (the default, 20 steps) or FGSM (one step):
                      200 {"digit", "probabilities", "input", "target", "eps", "method", "changed": 28x28,
                           "changed_digit", "changed_probabilities", "fooled", "largest_change", "milliseconds"}
                      400 for an unknown, repeated or bad parameter, or a body that is no usable image;
                      503 when it waited for the others' longer than 20 s (then try again)
    POST /read        body: an image file, as for /predict: every digit in it, in reading order (reading/pages.py):
                      200 {"lines": ["00568", ...], "digits": [{"box": [left, top, right, bottom] in the image's
                           pixels, "line" (1: the top one), "digit", "probabilities", "input": 28x28}, ...],
                           "notes": [one line each], "width", "height", "milliseconds"}
    POST /collect?digit=7   only with --collect DIR (else 404): body: the PNG the page made. Saved as a new file
                      in DIR/7/ under a name the server picks, never over another; 200 {"saved": "7/NAME.png",
                      "counts": {"0": n, ...}}; 400 for a digit that is not one of 0-9, another parameter, a body
                      that is not a PNG image with ink on it

The server is a table of routes (ROUTES: path -> method and handler) over short handlers, one a path, each
named for its path (/read's is read_page: reading/pages.read() reads a page). ServedNet is this server's net
(a checkpoint, or an ensemble), with a method for each route that reads: predict(), read_page(), explain()
and attack(). Every image it is sent is read by reading/pages.py, the one way the lab reads an image:
/predict, /explain, /attack and /collect take it as one digit (pages.digit_alone(), which read() calls for
one digit), /read as a page, where the reader of touching digits (reading/reader.py, --reader) reads the
digits that touch. What the page shows of
the layers comes from inside/layers.py, the explanations and attacks from inside/explain.py.

Explanations and attacks cost more than a prediction (tens of passes through the net): at most
half the cores work on them at once, so that predictions still flow while they run. Every kind of
request decodes its image in one of as many slots as there are cores (an image can be 49 megapixels).
"""

import contextlib
import errno
import json
import math
import os
import queue
import socket
import sys
import threading
import time
import traceback
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from inside.explain import IG_STEPS, MAX_EPS, PGD_STEPS, Explainer
from inside.layers import LayerOutputs, describe
from lab import ensemble
from lab.cli import UserError, add_checkpoint_flag, int_between, make_parser, positive_float, run_script
from lab.device import cores
from lab.files import make_folder, write_new
from net import count_parameters
from reading import pages  # read() and digit_alone(): the one way every request's image is read
from reading.images import ImageProblem, net_input
from reading.reader import add_reader_flag, reader_from_flag

PAGE = Path(__file__).resolve().parent / "draw"
# Every file the server sends: request path -> (file in draw/, content type). The request path is
# looked up here, never joined to a folder, so no path (/../net.pth, /%2e%2e/, /etc/passwd) reaches
# another file. The files are read at each request: edit draw.js, reload the page, see the change.
# The scripts are JavaScript modules (draw.js imports the others): a browser runs a module only when
# it comes with a JavaScript content type.
JS = "text/javascript; charset=utf-8"
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/draw.css": ("draw.css", "text/css; charset=utf-8"),
    **{
        f"/{name}": (name, JS)
        for name in (
            "draw.js",
            "state.js",
            "hooks.js",
            "pad.js",
            "requests.js",
            "server.js",
            "answer.js",
            "explain.js",
            "number.js",
            "photo.js",
            "collect.js",
            "paint.js",
        )
    },
}
MAX_BODY = 10_000_000  # bytes: a larger body is refused from its Content-Length, before it is read
QUEUE_S = 20.0  # seconds an explanation or attack may wait for its turn before it is answered 503
# What /explain, /attack and /collect take besides the image (their body), as query parameters
PARAMETERS = {"/explain": ("target",), "/attack": ("eps", "target", "method"), "/collect": ("digit",)}
PNG = b"\x89PNG\r\n\x1a\n"  # the first bytes of every PNG file
METHODS = ("pgd", "fgsm")


# ---------------------------------------------------------------- what a request may ask, and what is refused


class Refused(Exception):
    """A request answered with an error `status` and its one line: a parameter that cannot be used (400),
    a body that cannot be read (400, 408, 411, 413), no explainer free in time (503)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def target_parameter(text, any_digit):
    """The target digit 0-9 from the query; None when absent, or "any" where `any_digit` allows it."""
    if text is None or (any_digit and text == "any"):
        return None
    if len(text) != 1 or text not in "0123456789":
        raise Refused(400, f"target must be a digit 0-9{' or any' if any_digit else ''}, not {text[:20]!r}")
    return int(text)


def eps_parameter(text):
    """/attack's eps: a number from 0 to MAX_EPS."""
    try:
        eps = float(text)
    except (TypeError, ValueError):
        eps = math.nan
    if not 0 <= eps <= MAX_EPS:  # NaN fails too
        raise Refused(
            400,
            f"eps must be a number from 0 to {MAX_EPS:g} (how far each pixel, 0..1, may move), not {str(text)[:20]!r}",
        )
    return eps


def method_parameter(text):
    """/attack's method: pgd or fgsm."""
    if text not in METHODS:
        raise Refused(400, f"method must be {' or '.join(METHODS)}, not {text[:20]!r}")
    return text


def parameters(path, url):
    """The query parameters of /explain, /attack or /collect as a dict; Refused (400) for one unknown or given twice."""
    fields = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name, values in fields.items():
        if name not in PARAMETERS[path]:
            raise Refused(400, f"unknown parameter {name[:20]!r}: {path} takes {', '.join(PARAMETERS[path])}")
        if len(values) > 1:
            raise Refused(400, f"{name} is given {len(values)} times")
    return {name: values[0] for name, values in fields.items()}


def digit_parameter(url):
    """/collect's digit: exactly one of 0-9, and nothing else in the query."""
    digit = parameters("/collect", url).get("digit")
    if digit is None or len(digit) != 1 or digit not in "0123456789":
        raise Refused(400, f"digit must be one of 0-9, not {str(digit)[:20]!r}: POST /collect?digit=7 with the PNG")
    return digit


# ---------------------------------------------------------------- reading, explaining, collecting


def as_json(t, decimals=3):
    """A tensor as nested lists of short numbers (via float64, so 0.123 prints as 0.123)."""
    return t.double().round(decimals=decimals).tolist()


class Explainers:
    """A few Explainers (inside/explain.py), each lent to one request at a time.

    They bound how many explanations and attacks run at once, and keep them apart: Grad-CAM hooks a
    layer of its net while it runs, and another thread's pass through the same net would trip it.
    """

    def __init__(self, model, ckpt, n):
        self.n = n
        self.idle = queue.SimpleQueue()
        for _ in range(n):
            self.idle.put(Explainer(model, ckpt))  # each a copy of the net

    @contextlib.contextmanager
    def lend(self, wait):
        try:
            explainer = self.idle.get(timeout=wait)
        except queue.Empty:
            raise Refused(
                503,
                f"busy: explanations and attacks run {self.n} at a time here, and this one "
                f"waited {wait:g} s for its turn; try again in a moment",
            ) from None
        try:
            yield explainer
        finally:
            self.idle.put(explainer)


class ServedNet:
    """A checkpoint's net (or an ensemble's), reading image files for any number of threads at once."""

    def __init__(self, checkpoint, touching=None):
        model, self.ckpt = ensemble.load(checkpoint)  # the one-line errors of test.py and predict.py
        self.touching = touching  # the reader of touching digits (reading/reader.py), or None
        # Images decoded at once, by every kind of request: each holds its decoded pixels (up to 49 MP)
        self.decoding = threading.BoundedSemaphore(cores())
        # Copies of the net, made before LayerOutputs hooks it: their passes keep nothing. Half the
        # cores at most, so that readings (one core each) go on while explanations run.
        self.explainers = Explainers(model, self.ckpt, max(1, cores() // 2))
        # What the page shows inside: the layers of one net, the first of an ensemble, which reads as a whole
        first = ensemble.members(model)[0]
        self.layers = LayerOutputs(first)
        self.ensemble = model if model is not first else None
        self.classify = pages.classifier(model, self.ckpt)  # its passes keep nothing: LayerOutputs is not asked to
        with torch.inference_mode():  # one run on a blank image: the layers' shapes, and a warm start
            _, maps, dense = self.layers(torch.zeros(1, 1, 28, 28))
        blocks, hidden = describe(first)
        paths = [str(c) for c in ([checkpoint] if isinstance(checkpoint, (str, Path)) else checkpoint)]
        self.info = {
            "checkpoint": " + ".join(paths),
            "model": self.ckpt["model"],
            "members": len(paths),
            "parameters": count_parameters(model),
            "epoch": self.ckpt.get("epoch"),
            "val_acc": self.ckpt.get("val_acc"),
            "test_acc": self.ckpt.get("test_acc"),
            "feature_maps": [{"layers": b, "shape": list(m.shape)} for b, m in zip(blocks, maps)],
            "dense": [{"layers": h, "size": len(d)} for h, d in zip(hidden, dense)],
            "max_bytes": MAX_BODY,
            "explain": self.explain_info(),
        }

    def explain_info(self):
        """What /info says of the explanations: Grad-CAM's layer and the size of its maps, or null without one."""
        with self.explainers.lend(wait=None) as e:
            e.integrated_gradients(torch.zeros(28, 28), 0)  # a warm start for the first request
            cam = e.grad_cam(torch.zeros(28, 28), 0, upsample=False)
            if cam is not None:  # the size of its maps, before they are spread over 28x28
                cam = {"size": list(cam.shape[1:])}
        return {
            "grad_cam": cam,
            "ig_steps": IG_STEPS,
            "pgd_steps": PGD_STEPS,
            "max_eps": MAX_EPS,
            "at_once": self.explainers.n,
        }

    def predict(self, data):
        """/predict: an image file's bytes, read as one digit (reading/pages.read, as test.py --images reads a
        file), with what the layers handed on. Raises ImageProblem (one line) for unusable data."""
        t0 = time.perf_counter()
        shown = {}

        def classify(pixels):  # the net's one pass, keeping what the first net's layers hand on for the page
            with torch.inference_mode():
                x = net_input(list(pixels), self.ckpt)
                logits, shown["maps"], shown["dense"] = self.layers(x)
                if self.ensemble is not None:  # the members' mean reads; the first member's layers are shown
                    logits = self.ensemble(x)
            return logits.float().softmax(1)

        with self.decoding:  # and the net's pass: a prediction is one core's work, as many at once as cores
            digit = pages.read(data, classify, one_digit=True).digits[0]
        return {
            "digit": digit.digit,
            "probabilities": digit.probabilities.tolist(),
            "input": as_json(digit.pixels),
            "feature_maps": [as_json(m) for m in shown["maps"]],
            "dense": [as_json(d) for d in shown["dense"]],
            "milliseconds": round(1000 * (time.perf_counter() - t0), 1),
        }

    def read_page(self, data):
        """/read: every digit in an image file's bytes, in reading order, as predict.py reads a page."""
        t0 = time.perf_counter()
        with self.decoding:  # the page's pieces and cuts are read by the net too: a core's work, as a reading
            page = pages.read(data, self.classify, self.touching)
        img = page.image
        return {
            "lines": page.lines,
            "notes": page.notes,
            "width": img.width,
            "height": img.height,
            "digits": [
                {
                    "box": list(d.box),
                    "line": d.line + 1,
                    "digit": d.digit,
                    "probabilities": d.probabilities.tolist(),
                    "input": as_json(d.pixels),
                    "read_by": "reader" if d.by_reader else "net",
                }
                for d in page.digits
            ],
            "milliseconds": round(1000 * (time.perf_counter() - t0), 1),
        }

    def pixels(self, data):
        """An image file's bytes -> the 28x28 pixels the net sees, for /explain and /attack: the digit alone as
        /predict reads it (pages.digit_alone(), without the net's pass: the explainer makes its own). Decoded in
        turn with the predictions' images, then they wait for an explainer without a slot."""
        with self.decoding:
            return pages.digit_alone(data).pixels

    def explain(self, data, wait, target=None):
        """/explain: the image's maps for `target` (default: the digit read). ImageProblem for unusable data."""
        t0 = time.perf_counter()
        seen = self.pixels(data)
        with self.explainers.lend(wait) as e:
            logits = e.logits(seen)[0]
            digit = int(logits.argmax())
            target = digit if target is None else target
            ig = e.integrated_gradients(seen, target)[0]
            cam = e.grad_cam(seen, target)
            blank = e.logits(torch.zeros(28, 28))[0, target]
        return {
            "digit": digit,
            "probabilities": logits.softmax(0).tolist(),
            "input": as_json(seen),
            "target": target,
            "score": round(float(logits[target]), 3),
            "blank_score": round(float(blank), 3),
            "integrated_gradients": as_json(ig, 4),
            "grad_cam": None if cam is None else as_json(cam[0], 4),
            "milliseconds": round(1000 * (time.perf_counter() - t0), 1),
        }

    def attack(self, data, wait, eps, target=None, method="pgd"):
        """/attack: the image changed by at most eps per pixel, away from the digit read or towards `target`."""
        t0 = time.perf_counter()
        seen = self.pixels(data)
        with self.explainers.lend(wait) as e:
            before = e.logits(seen)[0].softmax(0)
            digit = int(before.argmax())
            changed = e.attack(seen, eps, digit, target, method)[0, 0]
            after = e.logits(changed)[0].softmax(0)
        new = int(after.argmax())
        return {
            "digit": digit,
            "probabilities": before.tolist(),
            "input": as_json(seen),
            "target": "any" if target is None else target,
            "eps": eps,
            "method": method,
            "changed": as_json(changed, 4),
            "changed_digit": new,
            "changed_probabilities": after.tolist(),
            "fooled": new != digit if target is None else new == target,
            "largest_change": round(float((changed - seen).abs().max()), 4),
            "milliseconds": round(1000 * (time.perf_counter() - t0), 1),
        }


class Collector:
    """--collect DIR: the drawings the page saves, each as a new PNG file in DIR/<digit>/.

    The client sends only the digit (one of 0-9) and the PNG: the server picks the folder and the
    file's name, and never writes over a file (lab/files.write_new), so nothing it is sent can name a
    path. It keeps only drawings it can read, with ink on them, as predict.py would read them.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        make_folder(self.folder, "--collect")  # at start: a folder that cannot be made is one line, exit 2

    def counts(self):
        """How many drawings of each digit DIR holds (those saved before this run too)."""
        return {
            str(d): sum(1 for f in (self.folder / str(d)).glob("*.png") if not f.name.startswith("."))
            if (self.folder / str(d)).is_dir()
            else 0
            for d in range(10)
        }

    def save(self, digit, data):
        """Save the PNG `data` as a drawing of `digit` (a str, checked); returns the answer as a dict."""
        if not data.startswith(PNG):
            raise Refused(400, "collect takes the PNG file the page makes: this body is not a PNG file")
        pages.digit_alone(data)  # read as /predict reads it: an ImageProblem (400) for a PNG with no digit on it
        make_folder(self.folder / digit, "--collect")
        path = write_new(self.folder / digit, time.strftime("drawn-%Y%m%d-%H%M%S"), data)
        return {"saved": f"{digit}/{path.name}", "counts": self.counts()}


# ---------------------------------------------------------------- the routes: one short handler each

# Each handler takes the request (Handler, below) and returns the answer as a dict, sent as JSON, or
# None when it has answered itself. It reads the body with request.body(), which raises Refused where
# the body is missing, too large or cut short: a handler checks what it can before that costs an upload.


def page_file(request):
    """GET /, /draw.js, ...: one of the page's files, found by its request path in ASSETS."""
    name, content_type = ASSETS[request.route]
    request.send_body(200, (PAGE / name).read_bytes(), content_type)


def info(request):
    """GET /info: the checkpoint, its layers, what the explanations take; collect mode's folder and counts."""
    collector = request.server.collector
    collecting = collector and {"folder": str(collector.folder), "counts": collector.counts()}
    return {**request.server.net.info, "collect": collecting}


def predict(request):
    """POST /predict: the digit read in the image, and what each layer computed."""
    return request.server.net.predict(request.body())


def read_page(request):
    """POST /read: every digit in the image, in reading order."""
    return request.server.net.read_page(request.body())


def explain(request):
    """POST /explain?target=7: why the net gives the target its score."""
    data = request.body()
    target = target_parameter(parameters("/explain", request.path).get("target"), False)
    return request.server.net.explain(data, QUEUE_S, target)


def attack(request):
    """POST /attack?eps=0.1&target=any&method=pgd: the image changed to fool the net."""
    data = request.body()
    p = parameters("/attack", request.path)
    method = method_parameter(p.get("method", "pgd"))
    eps = eps_parameter(p.get("eps", "0.1"))
    target = target_parameter(p.get("target"), True)
    return request.server.net.attack(data, QUEUE_S, eps, target, method)


def collect(request):
    """POST /collect?digit=7 (only with --collect): the drawing saved as a new file in DIR/7/."""
    digit = digit_parameter(request.path)  # checked before the body is read: a bad label costs no upload
    return request.server.collector.save(digit, request.body())


# Every path the server answers: path -> (method, handler). Any other path is 404, another method 405.
ROUTES = {
    "/info": ("GET", info),
    "/predict": ("POST", predict),
    "/read": ("POST", read_page),
    "/explain": ("POST", explain),
    "/attack": ("POST", attack),
    "/collect": ("POST", collect),  # only with --collect: without it, no page at all (404)
    **{path: ("GET", page_file) for path in ASSETS},
}


# ---------------------------------------------------------------- the server


class Handler(BaseHTTPRequestHandler):
    """One request: its route's handler, and every error as JSON {"error": "one line"}.
    HTTP/1.0: one request per connection, then it closes."""

    server_version = "draw.py"

    def setup(self):
        # seconds a client may stay silent (in its headers or body) before we drop it: a client that
        # promises 1000 bytes and sends 10 holds its own thread that long, and no one else's
        self.timeout = self.server.request_timeout
        super().setup()

    def do_GET(self):
        self.answer("GET")

    def do_POST(self):
        self.answer("POST")

    def do_PUT(self):
        self.send_error(405, "only GET and POST")

    do_DELETE = do_PATCH = do_PUT

    def answer(self, method):
        """Look the path up in the server's routes, run its handler, send what it answers."""
        self.route = urlsplit(self.path).path
        if self.route not in self.server.routes:
            return self.send_error(404, "no such page")
        allowed, handler = self.server.routes[self.route]
        if method != allowed:
            posts = ", ".join(p for p, (m, _) in self.server.routes.items() if m == "POST")
            return self.send_error(
                405, f"POST the image file to {self.route}" if method == "GET" else f"POST goes to {posts}"
            )
        try:
            answer = handler(self)
        except Refused as e:
            return self.send_error(e.status, str(e))
        except ImageProblem as e:
            return self.send_error(400, str(e))
        except UserError as e:  # /collect could not write its file (a full disk, a read-only folder)
            return self.send_error(500, str(e))
        except Exception as e:  # a bug: the page gets one line, the terminal the traceback
            traceback.print_exc()
            return self.send_error(500, f"internal error: {type(e).__name__}: {str(e)[:100]}")
        if answer is not None:
            self.send_json(answer)

    def body(self):
        """The request body; Refused where it cannot be read. Never reads more than MAX_BODY."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise Refused(411, "no Content-Length: send the image file itself as the body")
        if not length.strip().isdigit():
            raise Refused(400, f"Content-Length is not a number: {length[:20]!r}")
        if int(length) > MAX_BODY:  # answered at once; a client still sending may see its upload cut
            raise Refused(
                413,
                f"the file is {int(length) / 1e6:.1f} MB, over the limit of {MAX_BODY / 1e6:.0f} MB: crop or shrink it",
            )
        try:
            data = self.rfile.read(int(length))
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.timeout:g} s") from None
        if len(data) != int(length):
            raise Refused(400, f"the body is {len(data)} bytes, not the {int(length)} its Content-Length says")
        return data

    def send_error(self, code, message=None, explain=None):
        """Every error, ours and http.server's own (a malformed request...), as JSON {"error": "one line"}."""
        message = message or HTTPStatus(code).phrase
        self.log_message('"%s" %d %s', self.requestline[:100], code, message)
        self.close_connection = True
        try:
            self.send_json({"error": message}, code)
        except OSError:  # the client has gone (or stopped reading): nothing more to say
            pass

    def send_json(self, obj, code=200):
        self.send_body(code, json.dumps(obj).encode(), "application/json")

    def send_body(self, code, body, content_type):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # a student editing draw.js sees the change on reload
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        pass  # a line for every stroke would flood the terminal; errors are logged by send_error


def bind_option(windows=None):
    """The socket option draw.py's server binds with, so that a second draw.py on its port hears "port in use".

    POSIX: SO_REUSEADDR (http.server's choice), so that a draw.py started again gets its port at once
    rather than after the old connections' minute of TIME_WAIT; a port still listened on stays refused.
    Windows: SO_REUSEADDR there lets a second server bind a port in use, silently, and the browser may
    talk to the old one; SO_EXCLUSIVEADDRUSE (Windows only) refuses it. windows: None for this machine.
    """
    if windows is None:
        windows = os.name == "nt"
    return socket.SO_EXCLUSIVEADDRUSE if windows else socket.SO_REUSEADDR


class Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for open connections
    allow_reuse_address = False  # server_bind sets bind_option() instead

    def __init__(self, address, net, request_timeout=10.0, collector=None):
        self.net = net  # the checkpoint's net, as this server reads with it (ServedNet)
        self.request_timeout = request_timeout
        self.collector = collector
        self.routes = {path: route for path, route in ROUTES.items() if collector or path != "/collect"}
        super().__init__(address, Handler)

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, bind_option(), 1)
        super().server_bind()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser went away mid-answer (a new drawing, a closed tab): nothing to do
        super().handle_error(request, client_address)


def make_server(net, host="127.0.0.1", port=8000, request_timeout=10.0, collector=None):
    """Listen on host:port (0: any free port); a port in use or a wrong address is a UserError."""
    try:
        return Server((host, port), net, request_timeout, collector)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} is in use (another draw.py?): pick another with --port, or --port 0 for any free one"
            ) from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


# ---------------------------------------------------------------- the script


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    add_checkpoint_flag(p, several=True)
    add_reader_flag(p)
    a(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this computer only; 0.0.0.0: your whole network)",
    )
    a("--port", type=int_between(0, 65535, "a port number"), default=8000, help="(default: 8000; 0 picks a free one)")
    a("--no-browser", action="store_true", help="do not open the page in a browser")
    a(
        "--request-timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="drop a client that sends nothing for S seconds mid-request (default: 10)",
    )
    a(
        "--collect",
        metavar="DIR",
        default=None,
        help="collect mode: the page asks for each digit in turn and saves your drawings as PNG files in "
        "DIR/0/ ... DIR/9/, a labelled folder for python test.py --images DIR; without it nothing is written",
    )
    return p


def lan_address():
    """This computer's address on the local network, for the others to type (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # a UDP 'connect' only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


def can_open_browser():
    # Without a desktop, Python's webbrowser falls back to text browsers (lynx, w3m) that would take
    # over this terminal: on Linux, only open a browser when there is a display.
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv=None):
    args = parser().parse_args(argv)
    net = ServedNet(args.checkpoint, reader_from_flag(args.reader))  # first: without a checkpoint nothing listens
    missing = [name for name, _ in ASSETS.values() if not (PAGE / name).is_file()]
    if missing:
        raise UserError(f"{PAGE / missing[0]} is missing: draw.py needs the draw/ folder that comes with it")
    # One image is a few small tensors: one thread each is fastest, and requests in parallel use the cores.
    torch.set_num_threads(1)
    collector = Collector(args.collect) if args.collect else None
    server = make_server(net, args.host, args.port, args.request_timeout, collector)
    host, port = server.server_address[:2]
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
    i = net.info
    if i["members"] == 1:
        print(
            f"Checkpoint {i['checkpoint']}: {i['model']}, epoch {i['epoch']}, "
            f"validation accuracy {100 * (i['val_acc'] or 0):.2f}%"
        )
    else:
        print(
            f"Checkpoints {i['checkpoint']}: {i['model']}, reading with the mean of their probabilities "
            "(the page shows the first one's layers)"
        )
    if host == "0.0.0.0":
        print(
            f"warning: --host 0.0.0.0: anyone on your network can use this page, at "
            f"http://{lan_address()}:{port}/ (it serves the page and predictions, no files"
            + (f"; and saves their drawings into {args.collect}" if collector else "")
            + ")"
        )
    if collector:
        print(
            f"Collect mode: the page saves your drawings into {args.collect}/<digit>/ "
            f"({sum(collector.counts().values())} there already)"
        )
    print(f"Serving {url}  (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        if can_open_browser():
            webbrowser.open(url)
        else:
            print("No display here: open the address above in a browser.", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    run_script(main)
