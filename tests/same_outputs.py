"""Every script's outputs on fixed inputs, to compare before and after a change (a tool, not part of the suite).

    python tests/same_outputs.py record OUT_DIR --data-dir DIR   # writes OUT_DIR/outputs.json (5 min, 2 busy cores)
    python tests/same_outputs.py compare OLD_DIR NEW_DIR         # exit 1, with each difference, if any
    python tests/same_outputs.py timing OLD_ROOT NEW_ROOT --data-dir DIR   # one epoch, alternated, 5 pairs

record runs, from this project, on the CPU with one thread and in fp32 (so that the same code gives the
same figures): every script's --help; a tiny train.py run of the default recipe (its printout, net.pth's
metadata and settings record, last.pt's keys, hashes of the weights, TensorBoard's tags, scalars, texts
and pictures); test.py plain and with --json --report, and on two checkpoints; sweep.py of two runs with
--jobs 1 and report.py on it; net.py; handwriting.py with the fonts in .fonts/ (if there); bench.py
--quick (its table's words only: every number masked); a tiny train_reader.py; and the reading path of
tests/reading_outputs.py (predict.py, test.py --images, bench.py --pages --quick, draw.py's routes) on
the trained net. Masked: timings, throughputs, dates, the temporary folder and the data folder.

timing runs `python train.py --epochs 1` (all 55,000 images) of two checkouts in turn, OLD NEW OLD NEW ...,
and prints each pair's epoch time (the seconds train.py prints for its epoch) and their ratio; flags it
does not know go on to train.py.
Words, not flags, choose the mode: tests/test_layout.py checks every --flag the docs name against the scripts.
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import reading_outputs  # noqa: E402  (after the path above: it sits beside this file)
from reading_outputs import differences  # noqa: E402

SCRIPTS = ["train.py", "test.py", "predict.py", "draw.py", "sweep.py", "report.py", "net.py", "handwriting.py",
           "bench.py", "train_reader.py"]
TIMING = re.compile(r"\d[\d.,]*\s*(ms|s|sec|seconds|images/s|img/s|pieces/s|steps/s|/s)(?![\w])")
DATE = re.compile(r"\d{8}-\d{6}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?")  # sweep names; report.md's date
NUMBER = re.compile(r"\d[\d.,]*")
# train.py's tiny run: the default recipe on 2,000 images, fp32 on one CPU thread
TINY = ["--limit", "2000", "--val-size", "500", "--test-limit", "1000", "--epochs", "1", "--seed", "1",
        "--precision", "fp32", "--device", "cpu", "--log-every", "4", "--eval-every", "8"]
CPU = ["--device", "cpu", "--precision", "fp32"]


TIMED_COLUMN = re.compile(r"s/epoch|seconds|img/s|\bms\b|\btime\b")


def timed_columns(text):
    """Markdown tables' cells under a heading of a time or a rate (report.py's s/epoch) as T."""
    lines, timed = text.split("\n"), set()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            timed = set()
            continue
        cells = line.split("|")
        if not timed and not set(line) <= set("|:- "):
            timed = {k for k, cell in enumerate(cells) if TIMED_COLUMN.search(cell)}
            continue
        if not set(line) <= set("|:- "):
            lines[i] = "|".join("T" if k in timed else cell for k, cell in enumerate(cells))
    return "\n".join(lines)


class Recorder:
    """Runs the scripts in one temporary folder and masks what changes from run to run."""

    def __init__(self, tmp, data_dir):
        self.tmp = tmp
        self.data_dir = data_dir

    def mask(self, text):
        for path, name in ((self.tmp, "TMP"), (self.data_dir, "DATA"), (ROOT, "ROOT")):
            text = text.replace(str(path), name)
        return DATE.sub("DATE", TIMING.sub(r"T \1", timed_columns(text)))

    def run(self, *argv):
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
               "COLUMNS": "100"}
        env.setdefault("MNIST_MIRROR", str(ROOT.parent / "shared" / "mnist"))
        argv = [sys.executable, str(ROOT / argv[0]), *map(str, argv[1:])]
        proc = subprocess.run(argv, cwd=self.tmp, env=env, capture_output=True, text=True, encoding="utf-8")
        return {"returncode": proc.returncode, "stdout": self.mask(proc.stdout), "stderr": self.mask(proc.stderr)}

    def masked(self, obj):
        """A JSON-like object with its strings masked and its timing fields replaced."""
        if isinstance(obj, dict):
            return {str(k): ("T" if re.search("time|second|millisecond", str(k)) else self.masked(v))
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.masked(v) for v in obj]
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, Path):
            return self.mask(str(obj))
        return obj


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def picture(data):
    """A picture's pixels' hash (not the file's: an encoder's metadata may hold a date)."""
    return digest(np.asarray(Image.open(io.BytesIO(data))).tobytes())


def tensors(state):
    """{name: hash of its values} of a state_dict."""
    return {k: digest(v.detach().cpu().contiguous().numpy().tobytes()) for k, v in state.items()}


def checkpoint(path, rec):
    import torch

    saved = torch.load(path, weights_only=True)
    out = {k: rec.masked(v) for k, v in saved.items() if k != "state_dict"}
    out["state_dict"] = tensors(saved["state_dict"])
    return out


def run_state(path, rec):
    """last.pt: its keys, its settings and figures, and hashes of the weights and generators it keeps."""
    import torch

    saved = torch.load(path, weights_only=True)
    out = {"keys": sorted(saved)}
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            out[key] = digest(value.numpy().tobytes())
        elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            out[key] = tensors(value)
        elif key in ("optimizer", "scheduler", "scaler"):
            out[key] = sorted(value) if isinstance(value, dict) else repr(type(value))
        else:
            out[key] = rec.masked(value)
    return out


def board(folder, rec):
    """TensorBoard's record of a run: each event folder's tags, scalars, texts and pictures (times masked)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in sorted({p.parent for p in Path(folder).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0, "tensors": 0, "histograms": 0})
        acc.Reload()
        tags = {kind: sorted(v) if isinstance(v, list) else v for kind, v in acc.Tags().items()}
        scalars = {}
        for tag in acc.Tags()["scalars"]:
            timed = re.search("time|second", tag)
            scalars[tag] = [[s.step, "T" if timed else s.value] for s in acc.Scalars(tag)]
        texts = {}
        for tag in acc.Tags()["tensors"]:
            values = [e.tensor_proto for e in acc.Tensors(tag)]
            if tag.endswith("text_summary"):
                texts[tag] = [rec.mask(b"".join(v.string_val).decode("utf-8")) for v in values]
            else:
                texts[tag] = [digest(v.SerializeToString()) for v in values]
        pictures = {tag: [[e.step, picture(e.encoded_image_string)] for e in acc.Images(tag)]
                    for tag in acc.Tags()["images"]}
        histograms = {tag: [[e.step, e.histogram_value.num, e.histogram_value.sum] for e in acc.Histograms(tag)]
                      for tag in acc.Tags()["histograms"]}
        name = events.relative_to(folder).as_posix()
        out[name] = {"tags": tags, "scalars": scalars, "texts": texts, "pictures": pictures,
                     "histograms": histograms}
    return out


def files(folder, rec):
    """{relative path: hash} of every file below folder: pictures by their pixels, texts masked."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = rec.mask(path.relative_to(folder).as_posix())
        if "tfevents" in name:
            continue  # read by board(); the file's name holds a time and a pid
        data = path.read_bytes()
        if path.suffix in (".png", ".jpg", ".jpeg"):
            out[name] = picture(data)
        elif path.suffix in (".md", ".txt", ".tsv", ".json", ".pbtxt", ".csv"):
            out[name] = rec.mask(data.decode("utf-8"))
        elif path.suffix in (".pth", ".pt"):
            out[name] = "checkpoint (read apart)"
        else:
            out[name] = digest(data)
    return out


def numbers_masked(result):
    """bench.py --quick's table: its words and columns only (every number is a timing or a rate, and the
    numbers' widths set the padding)."""
    out = {}
    for key, value in result.items():
        if isinstance(value, str):
            value = re.sub(r"-{3,}", "---", re.sub(r" +", " ", NUMBER.sub("N", value)))
        out[key] = value
    return out


def shortened(obj):
    """Long lists of numbers (heat maps, probabilities of every pixel) and long texts as their hash, so
    that outputs.json stays readable; a difference in one still shows where it is."""
    if isinstance(obj, dict):
        return {k: shortened(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if len(obj) > 64 and all(isinstance(v, (int, float, list)) for v in obj):
            return f"{len(obj)} items, sha256 {digest(json.dumps(obj).encode())}"
        return [shortened(v) for v in obj]
    if isinstance(obj, str) and len(obj) > 20000:
        return f"{len(obj)} characters, sha256 {digest(obj.encode())}"
    return obj


def record(out_dir, data_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir).resolve()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp).resolve()
        rec = Recorder(tmp, data_dir)
        data = ["--data-dir", data_dir]
        result["--help"] = {name: rec.run(name, "--help") for name in SCRIPTS}

        train = rec.run("train.py", *TINY, *data, "--logdir", "board", "--run-name", "tiny",
                        "--checkpoint", "net.pth")
        train["net.pth"] = checkpoint(tmp / "net.pth", rec)
        train["last.pt"] = run_state(tmp / "board" / "tiny" / "last.pt", rec)
        train["files"] = files(tmp / "board", rec)
        train["board"] = board(tmp / "board" / "tiny", rec)
        result["train.py"] = train

        result["test.py"] = rec.run("test.py", "--checkpoint", "net.pth", *CPU, *data)
        reported = rec.run("test.py", "--checkpoint", "net.pth", *CPU, *data, "--json", "test.json",
                           "--report", "report", "--samples", "4")
        reported["json"] = rec.masked(json.loads((tmp / "test.json").read_text(encoding="utf-8")))
        reported["files"] = files(tmp / "report", rec)
        result["test.py --json --report"] = reported

        sweep = rec.run("sweep.py", "--lr", "0.006", "0.002", *TINY[:-8], "--device", "cpu", "--precision", "fp32",
                        "--jobs", "1", "--name", "sweep", "--logdir", "sweeps", *data)
        sweep["files"] = files(tmp / "sweeps", rec)
        sweep["board"] = {run.name: board(run, rec) for run in sorted((tmp / "sweeps" / "sweep").iterdir())
                          if run.is_dir()}
        sweep["net.pth"] = {p.parent.name: checkpoint(p, rec) for p in sorted((tmp / "sweeps").rglob("net.pth"))}
        result["sweep.py"] = sweep
        report = rec.run("report.py", "sweeps/sweep", "--out", "sweep-report")
        report["files"] = files(tmp / "sweep-report", rec)
        result["report.py"] = report
        other = next((tmp / "sweeps").rglob("net.pth"))
        result["test.py, two checkpoints"] = rec.run("test.py", "--checkpoint", "net.pth", other, *CPU, *data)

        result["net.py"] = rec.run("net.py")

        fonts = sorted((ROOT / ".fonts").glob("*.woff2"))
        names = sorted({f.name.split("-latin")[0] for f in fonts})
        if names:
            written = rec.run("handwriting.py", "--fonts", *names, "--per-digit", "1", "--font-cache",
                              ROOT / ".fonts", "--out", "handwriting", "--seed", "3")
            written["files"] = files(tmp / "handwriting", rec)
            written["fonts"] = names
            result["handwriting.py"] = written
            result["test.py --images handwriting"] = rec.run("test.py", "--checkpoint", "net.pth", "--images",
                                                             "handwriting", *CPU, *data)
        else:
            print("no fonts in .fonts/: handwriting.py left out", file=sys.stderr)

        result["bench.py --quick"] = numbers_masked(rec.run("bench.py", "--quick", "--device", "cpu", *data))

        reader = rec.run("train_reader.py", "--pieces", "256", "--steps", "12", "--check-pieces", "64",
                         "--batch-size", "16", "--eval-every", "6", "--seed", "2", "--out", "reader.pth", *data)
        if (tmp / "reader.pth").exists():
            reader["reader.pth"] = checkpoint(tmp / "reader.pth", rec)
        result["train_reader.py"] = reader

        result["reading path (tests/reading_outputs.py)"] = rec.masked(reading_outputs.outputs(tmp / "net.pth",
                                                                                                data_dir))
    text = json.dumps(shortened(result), indent=1, sort_keys=True)
    (out_dir / "outputs.json").write_text(text, encoding="utf-8")
    print(f"wrote {out_dir / 'outputs.json'} ({len(text):,} characters)")


def dated(obj):
    """The dates masked again (records made before report.md's date was masked hold it)."""
    if isinstance(obj, dict):
        return {k: dated(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [dated(v) for v in obj]
    return DATE.sub("DATE", obj) if isinstance(obj, str) else obj


def compare(old, new):
    a = dated(json.loads((Path(old) / "outputs.json").read_text(encoding="utf-8")))
    b = dated(json.loads((Path(new) / "outputs.json").read_text(encoding="utf-8")))
    found = []
    for script in sorted(set(a) | set(b)):  # each script's first few differences, so that none hides another
        theirs = differences(a.get(script), b.get(script), f"/{script}")
        for line in theirs[:8]:
            print(line[:300])
        if len(theirs) > 8:
            print(f"/{script}: ... {len(theirs)} differences in all")
        found += theirs
    print(f"{len(found)} differences" if found else "the same outputs")
    return 1 if found else 0


EPOCH = re.compile(r"^epoch\s+1/1\b.*?(\d+(?:\.\d+)?) s\b", re.MULTILINE)


def epoch_seconds(root, tmp, data_dir, extra):
    """One default epoch of train.py in `root`, in its own folder: the seconds it prints for the epoch."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    argv = [sys.executable, str(Path(root) / "train.py"), "--epochs", "1", "--data-dir", str(data_dir),
            "--logdir", "board", "--checkpoint", "net.pth", *extra]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.setdefault("MNIST_MIRROR", str(ROOT.parent / "shared" / "mnist"))
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    found = EPOCH.search(proc.stdout)
    if proc.returncode or not found:
        raise SystemExit(f"train.py in {root} failed:\n{proc.stdout}\n{proc.stderr}")
    return float(found.group(1))


def timing(old_root, new_root, data_dir, pairs, extra):
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(pairs):
            old = epoch_seconds(old_root, tmp, data_dir, extra)
            new = epoch_seconds(new_root, tmp, data_dir, extra)
            ratios.append(new / old)
            print(f"pair {k + 1}: old {old:.1f} s, new {new:.1f} s, new/old {new / old:.3f}", flush=True)
    print(f"median new/old {float(np.median(ratios)):.3f} over {pairs} pairs (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["record", "compare", "timing"])
    p.add_argument("paths", nargs="+", help="record: OUT_DIR; compare: OLD_DIR NEW_DIR; timing: OLD_ROOT NEW_ROOT")
    p.add_argument("--data-dir", help="a folder holding MNIST, or to extract it into from $MNIST_MIRROR")
    p.add_argument("--pairs", type=int, default=5, help="timing: how many old/new pairs (default: 5)")
    args, extra = p.parse_known_args()  # timing: the rest goes to train.py (e.g. --device cpu)
    if extra and args.mode != "timing":
        p.error(f"unknown: {' '.join(extra)}")
    wanted = {"record": 1, "compare": 2, "timing": 2}[args.mode]
    if len(args.paths) != wanted:
        p.error(f"{args.mode} takes {wanted} folder(s)")
    if args.mode == "compare":
        return compare(*args.paths)
    if not args.data_dir:
        p.error("--data-dir is needed to record and to time")
    if args.mode == "timing":
        return timing(*args.paths, Path(args.data_dir).resolve(), args.pairs, extra)
    record(args.paths[0], args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
