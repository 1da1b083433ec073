"""Draw a digit in the browser and watch the network you trained read it, layer by layer.

    python draw.py                          # serves http://127.0.0.1:8000 and opens it in the browser
    python draw.py --checkpoint other.pth --port 0 --no-browser     # port 0: any free port
    python draw.py --host 0.0.0.0           # share it on the local network (a class, phones)
    python draw.py --checkpoint a.pth b.pth c.pth   # an ensemble reads; the layers shown are the first net's
    python draw.py --collect my_digits/     # the page asks for digits in turn and saves each into my_digits/7/...

The page is three plain files in draw/ (no internet needed). It sends the drawing, or a photo, to
this server as an image file; the server reads it exactly as predict.py reads a file (reading/images.py),
runs the net once, keeping what each layer hands on, and answers with JSON. Once the drawing is
still, the page also asks why the net read that digit (or any other: click its bar) and shows how
little change to the pixels makes it read another (docs/draw.md, docs/explain.md).
Python's standard library serves it: no web framework.

    GET  /            the page (and /draw.js, /draw.css)
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
from torch import nn

from lab import ensemble
from lab.cli import UserError, add_checkpoint_flag, int_between, make_parser, positive_float, run_script
from lab.device import cores
from inside.explain import IG_STEPS, MAX_EPS, PGD_STEPS, Explainer
from lab.files import make_folder, write_new
from reading.images import ImageProblem, load_image, net_input, preprocess
from reading.pages import classifier, read_page
from reading.reader import add_reader_flag, reader_from_flag
from net import count_parameters

PAGE = Path(__file__).resolve().parent / "draw"
# Every file the server sends: request path -> (file in draw/, content type). The request path is
# looked up here, never joined to a folder, so no path (/../net.pth, /%2e%2e/, /etc/passwd) reaches
# another file. The files are read at each request: edit draw.js, reload the page, see the change.
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/draw.js": ("draw.js", "text/javascript; charset=utf-8"),
          "/draw.css": ("draw.css", "text/css; charset=utf-8")}
MAX_BODY = 10_000_000  # bytes: a larger body is refused from its Content-Length, before it is read
QUEUE_S = 20.0  # seconds an explanation or attack may wait for its turn before it is answered 503
SHORT = {"MaxPool2d": "MaxPool", "BatchNorm2d": "BatchNorm", "AvgPool2d": "AvgPool"}  # layer names on the page
# What /explain and /attack take besides the image (their body), as query parameters
PARAMETERS = {"/explain": ("target",), "/attack": ("eps", "target", "method"), "/collect": ("digit",)}
POSTS = ("/predict", "/read", "/explain", "/attack", "/collect")  # /collect only with --collect
PNG = b"\x89PNG\r\n\x1a\n"  # the first bytes of every PNG file
METHODS = ("pgd", "fgsm")


# ---------------------------------------------------------------- what the net computes, layer by layer

class LayerOutputs:
    """Runs a model and keeps what each conv block and each hidden dense layer hands to the next layer.

    Forward pre-hooks see each layer's input as the model's own forward() runs:
    - a conv block's output is what enters the next Conv2d, or the Flatten after the last block
      (for cnn, after each block's pool and ReLU: 32x14x14, 64x7x7, 64x3x3);
    - a hidden dense layer's activations are what enters each Linear after the first (cnn: 128).
    Hooks run in the thread that calls the model, so each thread keeps its own (threading.local):
    one model serves all the server's requests at once, without a lock.
    """

    def __init__(self, model):
        self.model, self.local = model, threading.local()
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Flatten, nn.Linear)):
                m.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs):
        kept = getattr(self.local, "kept", None)
        if kept is None:  # the model run by someone else: keep nothing
            return
        x = inputs[0]
        if isinstance(module, nn.Linear):
            if kept["linears"]:  # the first Linear's input is the flattened image or maps, not a hidden layer
                kept["dense"].append(x[0].clone())
            kept["linears"] += 1
        else:
            if kept["convs"] and x.dim() == 4:  # the first Conv2d's input is the image itself
                kept["maps"].append(x[0].clone())
            kept["convs"] += isinstance(module, nn.Conv2d)

    def __call__(self, x):
        """model(x) -> (logits, [first image's maps C x H x W per conv block], [its activations per hidden layer])."""
        self.local.kept = {"maps": [], "dense": [], "convs": 0, "linears": 0}
        try:
            logits = self.model(x)
            return logits, self.local.kept["maps"], self.local.kept["dense"]
        finally:
            self.local.kept = None


def describe(model):
    """The layers in each conv block and each hidden dense layer, e.g. 'Conv 3×3 → MaxPool → ReLU'.

    Reads the modules in the order they were defined, which for every net in net.py is the order they run.
    """
    blocks, dense, current = [], [], None
    for m in model.modules():
        if list(m.children()) or isinstance(m, nn.Dropout):  # containers; dropout does nothing when reading
            continue
        if isinstance(m, nn.Conv2d):
            current = [f"Conv {m.kernel_size[0]}×{m.kernel_size[1]}"]
            blocks.append(current)
        elif isinstance(m, nn.Linear):
            current = [f"Linear {m.in_features}→{m.out_features}"]
            dense.append(current)
        elif isinstance(m, nn.Flatten):
            current = None
        elif current is not None:
            current.append(SHORT.get(type(m).__name__, type(m).__name__))
    return [" → ".join(b) for b in blocks], [" → ".join(d) for d in dense[:-1]]  # the last Linear gives the logits


def as_json(t, decimals=3):
    """A tensor as nested lists of short numbers (via float64, so 0.123 prints as 0.123)."""
    return t.double().round(decimals=decimals).tolist()


class BadRequest(Exception):
    """A request's parameter that cannot be used: answered 400 with its one line."""


class Busy(Exception):
    """No explainer came free in time: answered 503."""


class Explainers:
    """A few Explainers (inside/explain.py), each lent to one request at a time.

    They bound how many explanations and attacks run at once, and keep them apart: Grad-CAM hooks a
    layer of its net while it runs, and another thread's pass through the same net would trip it.
    """

    def __init__(self, model, ckpt, n):
        self.n, self.idle = n, queue.SimpleQueue()
        for _ in range(n):
            self.idle.put(Explainer(model, ckpt))  # each a copy of the net

    @contextlib.contextmanager
    def lend(self, wait):
        try:
            explainer = self.idle.get(timeout=wait)
        except queue.Empty:
            raise Busy(f"busy: explanations and attacks run {self.n} at a time here, and this one waited "
                       f"{wait:g} s for its turn; try again in a moment") from None
        try:
            yield explainer
        finally:
            self.idle.put(explainer)


def target_parameter(text, any_digit):
    """The target digit 0-9 from the query; None when absent, or "any" where `any_digit` allows it."""
    if text is None or (any_digit and text == "any"):
        return None
    if len(text) != 1 or text not in "0123456789":
        raise BadRequest(f"target must be a digit 0-9{' or any' if any_digit else ''}, not {text[:20]!r}")
    return int(text)


def eps_parameter(text):
    try:
        eps = float(text)
    except (TypeError, ValueError):
        eps = math.nan
    if not 0 <= eps <= MAX_EPS:  # NaN fails too
        raise BadRequest(f"eps must be a number from 0 to {MAX_EPS:g} (how far each pixel, 0..1, may move), "
                         f"not {str(text)[:20]!r}")
    return eps


def parameters(path, url):
    """/explain's and /attack's query parameters as a dict; BadRequest for one unknown or given twice."""
    fields = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name, values in fields.items():
        if name not in PARAMETERS[path]:
            raise BadRequest(f"unknown parameter {name[:20]!r}: {path} takes {', '.join(PARAMETERS[path])}")
        if len(values) > 1:
            raise BadRequest(f"{name} is given {len(values)} times")
    return {name: values[0] for name, values in fields.items()}


class DigitReader:
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
        self.layers, self.ensemble = LayerOutputs(first), model if model is not first else None
        self.classify = classifier(model, self.ckpt)  # its passes keep nothing: LayerOutputs is not asked to
        with torch.inference_mode():  # one run on a blank image: the layers' shapes, and a warm start
            _, maps, dense = self.layers(torch.zeros(1, 1, 28, 28))
        blocks, hidden = describe(first)
        paths = [str(c) for c in ([checkpoint] if isinstance(checkpoint, (str, Path)) else checkpoint)]
        self.info = {"checkpoint": " + ".join(paths), "model": self.ckpt["model"], "members": len(paths),
                     "parameters": count_parameters(model), "epoch": self.ckpt.get("epoch"),
                     "val_acc": self.ckpt.get("val_acc"), "test_acc": self.ckpt.get("test_acc"),
                     "feature_maps": [{"layers": b, "shape": list(m.shape)} for b, m in zip(blocks, maps)],
                     "dense": [{"layers": h, "size": len(d)} for h, d in zip(hidden, dense)],
                     "max_bytes": MAX_BODY, "explain": self.explain_info()}

    def explain_info(self):
        """What /info says of the explanations: Grad-CAM's layer and the size of its maps, or null without one."""
        with self.explainers.lend(wait=None) as e:
            e.integrated_gradients(torch.zeros(28, 28), 0)  # a warm start for the first request
            cam = e.grad_cam(torch.zeros(28, 28), 0, upsample=False)
            if cam is not None:  # the size of its maps, before they are spread over 28x28
                cam = {"size": list(cam.shape[1:])}
        return {"grad_cam": cam, "ig_steps": IG_STEPS, "pgd_steps": PGD_STEPS, "max_eps": MAX_EPS,
                "at_once": self.explainers.n}

    def read(self, data):
        """An image file's bytes -> the answer as a dict. Raises ImageProblem (one line) for unusable data."""
        t0 = time.perf_counter()
        with self.decoding:  # and the net's pass: a prediction is one core's work, as many at once as cores
            seen = preprocess(load_image(data))  # exactly what predict.py does with a file
            with torch.inference_mode():
                x = net_input([seen], self.ckpt)
                logits, maps, dense = self.layers(x)
                if self.ensemble is not None:  # the members' mean reads; the first member's layers are shown
                    logits = self.ensemble(x)
                probs = logits.float().softmax(1)[0]
        return {"digit": int(probs.argmax()), "probabilities": probs.tolist(), "input": as_json(seen),
                "feature_maps": [as_json(m) for m in maps], "dense": [as_json(d) for d in dense],
                "milliseconds": round(1000 * (time.perf_counter() - t0), 1)}

    def read_all(self, data):
        """/read: every digit in an image file's bytes, in reading order, as predict.py reads a page."""
        t0 = time.perf_counter()
        with self.decoding:  # the page's pieces and cuts are read by the net too: a core's work, as a reading
            img = load_image(data)
            page = read_page(img, self.classify, self.touching)
        return {"lines": page.lines, "notes": page.notes, "width": img.width, "height": img.height,
                "digits": [{"box": list(d.box), "line": d.line + 1, "digit": d.digit,
                            "probabilities": d.probabilities.tolist(), "input": as_json(d.pixels),
                            "read_by": "reader" if d.by_reader else "net"}
                           for d in page.digits],
                "milliseconds": round(1000 * (time.perf_counter() - t0), 1)}

    def pixels(self, data):
        """An image file's bytes -> the 28x28 pixels the net sees, for /explain and /attack: decoded in
        turn with the predictions' images, then the pixels wait for an explainer without holding a slot."""
        with self.decoding:
            return preprocess(load_image(data))

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
        return {"digit": digit, "probabilities": logits.softmax(0).tolist(), "input": as_json(seen),
                "target": target, "score": round(float(logits[target]), 3), "blank_score": round(float(blank), 3),
                "integrated_gradients": as_json(ig, 4), "grad_cam": None if cam is None else as_json(cam[0], 4),
                "milliseconds": round(1000 * (time.perf_counter() - t0), 1)}

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
        return {"digit": digit, "probabilities": before.tolist(), "input": as_json(seen),
                "target": "any" if target is None else target, "eps": eps, "method": method,
                "changed": as_json(changed, 4), "changed_digit": new, "changed_probabilities": after.tolist(),
                "fooled": new != digit if target is None else new == target,
                "largest_change": round(float((changed - seen).abs().max()), 4),
                "milliseconds": round(1000 * (time.perf_counter() - t0), 1)}


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
        return {str(d): sum(1 for f in (self.folder / str(d)).glob("*.png") if not f.name.startswith("."))
                if (self.folder / str(d)).is_dir() else 0 for d in range(10)}

    def save(self, digit, data):
        """Save the PNG `data` as a drawing of `digit` (a str, checked); returns the answer as a dict."""
        if not data.startswith(PNG):
            raise BadRequest("collect takes the PNG file the page makes: this body is not a PNG file")
        preprocess(load_image(data))  # an ImageProblem (400) for a PNG with no digit on it
        make_folder(self.folder / digit, "--collect")
        path = write_new(self.folder / digit, time.strftime("drawn-%Y%m%d-%H%M%S"), data)
        return {"saved": f"{digit}/{path.name}", "counts": self.counts()}


def digit_parameter(url):
    """/collect's digit: exactly one of 0-9, and nothing else in the query."""
    digit = parameters("/collect", url).get("digit")
    if digit is None or len(digit) != 1 or digit not in "0123456789":
        raise BadRequest(f"digit must be one of 0-9, not {str(digit)[:20]!r}: POST /collect?digit=7 with the PNG")
    return digit


# ---------------------------------------------------------------- the server

class Handler(BaseHTTPRequestHandler):
    """GET the page and /info, POST an image to /predict, /read, /explain, /attack (and /collect with
    --collect). HTTP/1.0: one request per connection, then it closes."""
    server_version = "draw.py"

    def setup(self):
        # seconds a client may stay silent (in its headers or body) before we drop it: a client that
        # promises 1000 bytes and sends 10 holds its own thread that long, and no one else's
        self.timeout = self.server.request_timeout
        super().setup()

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/info":
            collector = self.server.collector
            return self.send_json({**self.server.reader.info, "collect": collector and {
                "folder": str(collector.folder), "counts": collector.counts()}})
        if path in self.server.posts:
            return self.send_error(405, f"POST the image file to {path}")
        if path not in ASSETS:
            return self.send_error(404, "no such page")
        name, content_type = ASSETS[path]
        self.send_body(200, (PAGE / name).read_bytes(), content_type)

    def do_POST(self):
        path = urlsplit(self.path).path
        if path not in self.server.posts:  # /collect without --collect is no page at all
            known = path in ASSETS or path == "/info"
            return self.send_error(405 if known else 404, f"POST goes to {', '.join(self.server.posts)}" if known
                                   else "no such page")
        digit = None
        if path == "/collect":  # the label is checked before the body is read: a bad one costs no upload
            try:
                digit = digit_parameter(self.path)
            except BadRequest as e:
                return self.send_error(400, str(e))
        data = self.read_body()
        if data is None:
            return
        reader, wait = self.server.reader, QUEUE_S
        try:
            if path == "/predict":
                answer = reader.read(data)
            elif path == "/read":
                answer = reader.read_all(data)
            elif path == "/collect":
                answer = self.server.collector.save(digit, data)
            elif path == "/explain":
                answer = reader.explain(data, wait, target_parameter(parameters(path, self.path).get("target"), False))
            else:
                p = parameters(path, self.path)
                if p.get("method", "pgd") not in METHODS:
                    raise BadRequest(f"method must be {' or '.join(METHODS)}, not {p['method'][:20]!r}")
                answer = reader.attack(data, wait, eps_parameter(p.get("eps", "0.1")),
                                       target_parameter(p.get("target"), True), p.get("method", "pgd"))
        except (ImageProblem, BadRequest) as e:
            return self.send_error(400, str(e))
        except Busy as e:
            return self.send_error(503, str(e))
        except UserError as e:  # /collect could not write its file (a full disk, a read-only folder)
            return self.send_error(500, str(e))
        except Exception as e:  # a bug: the page gets one line, the terminal the traceback
            traceback.print_exc()
            return self.send_error(500, f"internal error: {type(e).__name__}: {str(e)[:100]}")
        self.send_json(answer)

    def do_PUT(self):
        self.send_error(405, "only GET and POST")

    do_DELETE = do_PATCH = do_PUT

    def read_body(self):
        """The request body, or None once an error has been answered. Never reads more than MAX_BODY."""
        length = self.headers.get("Content-Length")
        if length is None:
            self.send_error(411, "no Content-Length: send the image file itself as the body")
        elif not length.strip().isdigit():
            self.send_error(400, f"Content-Length is not a number: {length[:20]!r}")
        elif int(length) > MAX_BODY:  # answered at once; a client still sending may see its upload cut
            self.send_error(413, f"the file is {int(length) / 1e6:.1f} MB, over the limit of "
                                 f"{MAX_BODY / 1e6:.0f} MB: crop or shrink it")
        else:
            try:
                data = self.rfile.read(int(length))
            except TimeoutError:
                self.send_error(408, f"the body did not arrive within {self.timeout:g} s")
                return None
            if len(data) == int(length):
                return data
            self.send_error(400, f"the body is {len(data)} bytes, not the {int(length)} its Content-Length says")
        return None

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


class Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for open connections

    def __init__(self, address, reader, request_timeout=10.0, collector=None):
        self.reader, self.request_timeout, self.collector = reader, request_timeout, collector
        self.posts = POSTS if collector else tuple(p for p in POSTS if p != "/collect")
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser went away mid-answer (a new drawing, a closed tab): nothing to do
        super().handle_error(request, client_address)


def make_server(reader, host="127.0.0.1", port=8000, request_timeout=10.0, collector=None):
    """Listen on host:port (0: any free port); a port in use or a wrong address is a UserError."""
    try:
        return Server((host, port), reader, request_timeout, collector)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} is in use (another draw.py?): pick another with --port, "
                            "or --port 0 for any free one") from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


# ---------------------------------------------------------------- the script

def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    add_checkpoint_flag(p, several=True)
    add_reader_flag(p)
    a("--host", default="127.0.0.1",
      help="address to listen on (default: 127.0.0.1, this computer only; 0.0.0.0: your whole network)")
    a("--port", type=int_between(0, 65535, "a port number"), default=8000, help="(default: 8000; 0 picks a free one)")
    a("--no-browser", action="store_true", help="do not open the page in a browser")
    a("--request-timeout", type=positive_float, default=10.0, metavar="S",
      help="drop a client that sends nothing for S seconds mid-request (default: 10)")
    a("--collect", metavar="DIR", default=None,
      help="collect mode: the page asks for each digit in turn and saves your drawings as PNG files in "
           "DIR/0/ ... DIR/9/, a labelled folder for python test.py --images DIR; without it nothing is written")
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
    reader = DigitReader(args.checkpoint, reader_from_flag(args.reader))  # first: without a checkpoint nothing listens
    missing = [name for name, _ in ASSETS.values() if not (PAGE / name).is_file()]
    if missing:
        raise UserError(f"{PAGE / missing[0]} is missing: draw.py needs the draw/ folder that comes with it")
    # One image is a few small tensors: one thread each is fastest, and requests in parallel use the cores.
    torch.set_num_threads(1)
    collector = Collector(args.collect) if args.collect else None
    server = make_server(reader, args.host, args.port, args.request_timeout, collector)
    host, port = server.server_address[:2]
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
    i = reader.info
    if i["members"] == 1:
        print(f"Checkpoint {i['checkpoint']}: {i['model']}, epoch {i['epoch']}, "
              f"validation accuracy {100 * (i['val_acc'] or 0):.2f}%")
    else:
        print(f"Checkpoints {i['checkpoint']}: {i['model']}, reading with the mean of their probabilities "
              "(the page shows the first one's layers)")
    if host == "0.0.0.0":
        print(f"warning: --host 0.0.0.0: anyone on your network can use this page, at "
              f"http://{lan_address()}:{port}/ (it serves the page and predictions, no files"
              + (f"; and saves their drawings into {args.collect}" if collector else "") + ")")
    if collector:
        print(f"Collect mode: the page saves your drawings into {args.collect}/<digit>/ "
              f"({sum(collector.counts().values())} there already)")
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
