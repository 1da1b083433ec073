"""The reading path's outputs on fixed inputs, to compare before and after a change (not part of the suite).

    python tests/reading_outputs.py CHECKPOINT OUT_DIR [--data-dir DIR]   # writes OUT_DIR/outputs.json
    python tests/reading_outputs.py --compare OLD_DIR NEW_DIR              # exit 1, with each difference, if any

The inputs are made here from MNIST's test digits, the same every time: drawings as draw.py's page sends
them, photos of one digit, 20 sheets of digits (reading/sheets.py, as bench.py --pages makes them), a PNG
with no ink. What is recorded: predict.py --json and its printout on them all; test.py --images on a
labelled folder of them; bench.py --pages --quick's table; and draw.py's routes (/predict, /read,
/explain, /attack, /collect) answering them over HTTP from a real server on a free port. Timings
("milliseconds", "12.3 ms", "in 1.2 s") and the names draw.py picks for saved files are masked.
The scripts run on the CPU with one thread, so that the same code gives the same figures.
"""

import argparse
import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TIMING = re.compile(r"\d[\d.,]*\s*(ms|s|seconds|images/s|img/s)\b")
SAVED = re.compile(r"drawn-\d{8}-\d{6}[^\"/]*\.png")


def masked(text):
    return SAVED.sub("drawn-NAME.png", TIMING.sub(r"T \1", text))


def mask_json(obj):
    if isinstance(obj, dict):
        return {k: ("T" if k in ("milliseconds", "seconds") else mask_json(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_json(v) for v in obj]
    if isinstance(obj, str):
        return masked(obj)
    return obj


def png(image):
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def inputs(data_dir, folder):
    """The fixed inputs, written into `folder`: {name: bytes} and the labelled folder for test.py --images."""
    from test_draw import drawing
    from test_predict import user_photo

    from lab.data import load_split
    from reading.sheets import make_sheets

    images, labels = load_split(False, data_dir)
    images, labels = images.numpy(), labels.numpy()
    rng = np.random.default_rng(0)
    files = {}
    for k in range(12):
        files[f"drawn-{k}-{labels[k]}.png"] = drawing(images[k], rng)
    for k in range(12, 20):
        files[f"photo-{k}-{labels[k]}.jpg"] = photo_bytes(user_photo(images[k], rng))
    for k, sheet in enumerate(make_sheets(images, labels, 4, seed=5)):
        out = io.BytesIO()
        sheet.image.save(out, "JPEG", quality=90)
        files[f"sheet-{k:02d}-{sheet.spacing}.jpg"] = out.getvalue()
    files["blank.png"] = png(Image.new("RGB", (280, 280), "white"))
    pictures = folder / "pictures"
    pictures.mkdir()
    for name, data in files.items():
        (pictures / name).write_bytes(data)
    labelled = folder / "labelled"
    for name in files:
        if name.startswith(("drawn-", "photo-")):
            digit = name.split("-")[2][0]
            (labelled / digit).mkdir(parents=True, exist_ok=True)
            (labelled / digit / name).write_bytes(files[name])
    return files, pictures, labelled


def photo_bytes(image):
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def run(*argv, cwd):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True,
                          encoding="utf-8")
    return {"returncode": proc.returncode, "stdout": masked(proc.stdout), "stderr": masked(proc.stderr)}


def routes(checkpoint, files, folder):
    """draw.py's routes, over HTTP from a real server on a free port, on each input."""
    import torch

    import draw

    torch.set_num_threads(1)
    net = draw.ServedNet(checkpoint)
    server = draw.make_server(net, port=0, collector=draw.Collector(folder / "collected"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]

    def post(path, body):
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
            r = conn.getresponse()
            return [r.status, mask_json(json.loads(r.read()))]
        finally:
            conn.close()

    out = {}
    for name, data in files.items():
        answers = {"/predict": post("/predict", data), "/read": post("/read", data)}
        if not name.startswith("sheet-"):
            answers["/explain"] = post("/explain", data)
            answers["/explain?target=3"] = post("/explain?target=3", data)
            answers["/attack"] = post("/attack?eps=0.1", data)
            answers["/attack fgsm to 5"] = post("/attack?eps=0.2&target=5&method=fgsm", data)
            answers["/collect"] = post("/collect?digit=4", data)
        out[name] = answers
    server.shutdown()
    server.server_close()
    return out


def record(checkpoint, out_dir, data_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(outputs(checkpoint, data_dir), indent=1, sort_keys=True)
    (out_dir / "outputs.json").write_text(text, encoding="utf-8")
    print(f"wrote {out_dir / 'outputs.json'} ({len(text):,} characters)")


def outputs(checkpoint, data_dir):
    """What record writes, as a dict (tests/same_outputs.py keeps it beside every other script's)."""
    checkpoint = Path(checkpoint).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, pictures, labelled = inputs(data_dir, tmp)
        names = sorted(p.name for p in pictures.iterdir())
        result = {
            "predict.py": run(ROOT / "predict.py", *names, "--checkpoint", checkpoint, "--device", "cpu",
                              "--json", tmp / "predict.json", cwd=pictures),
            "predict.py --show": run(ROOT / "predict.py", "sheet-00-wide.jpg", "drawn-0-7.png", "--checkpoint",
                                     checkpoint, "--device", "cpu", "--show", tmp / "shown.png", cwd=pictures),
            "test.py --images": run(ROOT / "test.py", "--images", labelled, "--checkpoint", checkpoint, "--device",
                                    "cpu", "--data-dir", data_dir, "--json", tmp / "images.json", cwd=tmp),
            "bench.py --pages --quick": run(ROOT / "bench.py", "--pages", checkpoint, "--quick", "--data-dir",
                                            data_dir, cwd=tmp),
        }
        result["predict.py"]["json"] = mask_json(json.loads((tmp / "predict.json").read_text(encoding="utf-8")))
        result["test.py --images"]["json"] = mask_json(json.loads((tmp / "images.json").read_text(encoding="utf-8")))
        shown = tmp / "shown.png"
        result["predict.py --show"]["picture"] = hashlib.sha256(np.asarray(Image.open(shown)).tobytes()).hexdigest()
        result["routes"] = routes(checkpoint, files, tmp)
        return json.loads(json.dumps(result).replace(str(tmp), "TMP"))


def differences(a, b, where=""):
    if type(a) is not type(b):
        return [f"{where}: {str(a)[:200]} != {str(b)[:200]}"]
    if isinstance(a, dict):
        out = [f"{where}/{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:300]!r} != {str(b)[:300]!r}"]


def compare(old, new):
    a = json.loads((Path(old) / "outputs.json").read_text(encoding="utf-8"))
    b = json.loads((Path(new) / "outputs.json").read_text(encoding="utf-8"))
    found = differences(a, b)
    for line in found[:50]:
        print(line)
    print(f"{len(found)} differences" if found else "the same outputs")
    return 1 if found else 0


def tool_parser(doc):
    """The command line of a before/after tool (this one, tests/page_screens.py): record CHECKPOINT OUT_DIR, or
    --compare OLD_DIR NEW_DIR."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs=2, help="CHECKPOINT OUT_DIR, or with --compare OLD_DIR NEW_DIR")
    p.add_argument("--compare", action="store_true")
    p.add_argument("--data-dir", help="a folder holding MNIST (as --data-dir of the scripts)")
    return p


def main():
    p = tool_parser(__doc__)
    args = p.parse_args()
    if args.compare:
        return compare(*args.paths)
    if not args.data_dir:
        p.error("--data-dir is needed to record")
    record(*args.paths, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
