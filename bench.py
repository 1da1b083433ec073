"""Benchmark: how fast we train compared with the usual tutorial recipe, measured in one run.

    python bench.py                  # the comparison table (~4 min on 2 CPU cores)
    python bench.py --quick          # a tiny version of every case (under a minute; used by the tests)
    python bench.py --seeds 5 --train-args "--epochs 1"        # accuracy targets: median over seeds
    python bench.py --seeds 3                                  # ... of the default python train.py
    python bench.py --seeds 3 --train-args "--augment --epochs 20"
    python bench.py --draw                                     # draw.py's latency (every request), net.pth
    python bench.py --pages                                    # reading pages of digits (reading/pages.py), net.pth
    python bench.py --parts                                    # ms per batch: the step, augmentation, batch norm

Cases of the table, each in its own process so that its peak memory is its own:
  plain     the seed labs' recipe: torchvision MNIST + ToTensor/Normalize per sample, DataLoader,
            batch 64, Adam 1e-3, fp32
  plain_malloc  the same with our allocator setting (common.keep_freed_memory), to show what the
            tensor data path gains by itself
  fp32      ours: whole splits as tensors, batches by slicing, channels_last, OneCycle, fp32
  bf16/...  ours in the precision --precision auto picks on this machine
  compiled  ours with torch.compile (not in --quick: compiling alone takes longer than a minute)
and, below the table, "compute alone": our training step repeated on one batch in memory, the
rate of the arithmetic by itself, to show how much of a loop's time is left to win.
"""

import argparse
import http.client
import io
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Subset

import train  # to run its whole job: one epoch of train.train(), and its very training step
from lab import augment, settings
from lab.checkpoint import load_checkpoint
from lab.cli import add_data_flags, add_device_flag, make_parser, markdown_table, run_script, utf8_child
from lab.data import (
    AUGMENT_AT_ONCE,
    MEAN,
    STD,
    ensure_mnist,
    load_data,
    load_split,
    normalize,
    split_train_val,
    training_batches,
)
from lab.device import keep_freed_memory, pick_device, pick_precision, use_all_cores
from lab.metrics import evaluate
from net import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_SHEETS, PAGE_SHEETS_QUICK = 50, 3  # sheets of each spacing that --pages reads


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    a("--quick", action="store_true", help="tiny cases only: checks that every path runs, not how fast")
    a(
        "--seeds",
        type=int,
        default=0,
        metavar="N",
        help="instead of the table, run python train.py with seeds 1..N and report the medians",
    )
    a("--train-args", default="", help='flags for train.py in --seeds mode, e.g. "--epochs 1"')
    add_device_flag(p, "measure")
    add_data_flags(p)
    a(
        "--draw",
        nargs="?",
        const="net.pth",
        default=None,
        metavar="CHECKPOINT",
        help="instead, draw.py's latency with CHECKPOINT (default: net.pth): 100 drawings one at a time, "
        "then 8 threads x 25 at once; then each kind of /explain and /attack request, one at a time",
    )
    a(
        "--pages",
        nargs="?",
        const="net.pth",
        default=None,
        metavar="CHECKPOINT",
        help=f"instead, how well CHECKPOINT (default: net.pth) reads sheets of MNIST test digits photographed as a "
        f"phone would (reading/sheets.py): {PAGE_SHEETS} sheets of each spacing ({PAGE_SHEETS_QUICK} with --quick), "
        "digits and lines read right, and the reading order",
    )
    a(
        "--reader",
        metavar="FILE",
        default=None,
        help="with --pages: the reader of touching digits (train_reader.py); 'none' reads without "
        "(default: reader.pth, if it is there)",
    )
    a(
        "--parts",
        action="store_true",
        help="instead, what each part of a training step of the default recipe costs, in ms per batch: the step "
        "itself, batch norm, each part of the augmentation and the averaged weights",
    )
    a("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    return p


def maxrss_mib(ru_maxrss):
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    return ru_maxrss / (1 << 20) if sys.platform == "darwin" else ru_maxrss / 1024


def peak_rss_mib():
    """This process's peak resident memory, or None where the OS has no getrusage (Windows)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def mib(value):
    return "n/a" if value is None else f"{value:,.0f}"


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


# ---------------------------------------------------------------- the cases (run in a child process)


def case_plain(args, device, n_train, n_eval):
    """The tutorial recipe, as the seed labs and PyTorch's example do it."""
    from torchvision import datasets, transforms  # here: its import takes 1.3 s, and only this case needs it

    ensure_mnist(args.data_dir, args.mirror)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train_ds = datasets.MNIST(args.data_dir, train=True, transform=tf)
    test_ds = datasets.MNIST(args.data_dir, train=False, transform=tf)
    # the same 55,000 training images as ours (the same split), for a fair comparison
    idx = torch.arange(len(train_ds))
    (train_idx, _), _ = split_train_val(idx, idx, 5000)
    train_loader = DataLoader(Subset(train_ds, train_idx[:n_train].tolist()), batch_size=64, shuffle=True)
    test_loader = DataLoader(Subset(test_ds, range(n_eval)), batch_size=1000)

    torch.manual_seed(1)
    model = build_model("cnn").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    correct, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for x, y in test_loader:
            correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    eval_s = time.perf_counter() - t0
    n = len(train_loader.dataset)
    return {"train_ips": n / train_s, "eval_ips": n_eval / eval_s, "epoch_s": train_s, "test_acc": correct / n_eval}


def case_ours(args, device, n_train, n_eval, precision, compile_model):
    """Our train.py path: a real one-epoch training run, then evaluation throughput."""
    targs = settings.parse(
        [
            "--epochs",
            "1",
            "--precision",
            precision,
            "--data-dir",
            args.data_dir,
            "--limit",
            str(n_train),
            "--device",
            device.type,
        ]
        + (["--mirror", args.mirror] if args.mirror else [])
        + (["--compile"] if compile_model else [])
        + (["--val-size", "500", "--test-limit", str(n_eval)] if args.quick else [])
    )
    # (--quick checks the path, not the speed: a part of the validation and test sets)
    data = load_data(targs, device)

    # 1. one epoch through train.train, as python train.py --epochs 1 runs it (data loading excluded).
    #    Training img/s is measured over that epoch's training loop, first steps (and compiling) included,
    #    exactly as for the plain loop: one pass over the same 55,000 images.
    with tempfile.TemporaryDirectory() as tmp:
        targs.logdir, targs.checkpoint, targs.run_name = tmp, os.path.join(tmp, "net.pth"), "bench"
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull:
            stdout, sys.stdout = sys.stdout, devnull
            try:
                summary = train.train(targs, data)
            finally:
                sys.stdout = stdout
        epoch_s = time.perf_counter() - t0
    train_ips = summary["train_images"] / summary["train_seconds"]

    # 2. evaluation throughput (the speed does not depend on the weights), after one warm-up batch
    sx, sy = data["test"][0][:n_eval], data["test"][1][:n_eval]
    model = build_model("cnn").to(device).to(memory_format=torch.channels_last)
    evaluate(model, sx[:500], sy[:500], precision=precision)
    sync(device)
    t0 = time.perf_counter()
    evaluate(model, sx, sy, precision=precision)
    eval_ips = len(sx) / (time.perf_counter() - t0)
    return {"train_ips": train_ips, "eval_ips": eval_ips, "epoch_s": epoch_s, "test_acc": summary["test_acc"]}


def case_compute(args, device, steps, precision):
    """train.train_step alone, repeated on one batch already in memory: no data path, no logging.

    What is left is arithmetic. A training loop that runs near this rate cannot be made faster
    by any data pipeline, only by less or cheaper arithmetic (a smaller net, lower precision).
    """
    targs = settings.parse(["--device", device.type])
    images, labels = load_split(True, args.data_dir, args.mirror)
    x = normalize(images[: targs.batch_size]).to(device)
    y = labels[: targs.batch_size].to(device)
    torch.manual_seed(1)
    model = build_model("cnn").to(device).to(memory_format=torch.channels_last)
    optimizer = train.make_optimizer(targs, model.parameters(), device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = train.make_loss(targs)

    def step():
        return train.train_step(model, optimizer, scaler, loss_fn, (x, y, 1.0), precision)

    for _ in range(3 if args.quick else 10):  # warm-up: first calls pick kernels and grow the allocator
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return {"train_ips": steps * len(y) / (time.perf_counter() - t0)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(args, name):
    """One case of the table, measured in this process: its results as a dict."""
    use_all_cores()
    device = pick_device(args.device)
    # --quick: each case on a few images, enough for each to learn visibly (plain: 16 steps of 64; ours: 16
    # of 128, warming up and annealing), tested on 500
    n_train, n_eval = ((1000 if name.startswith("plain") else 2000), 500) if args.quick else (55000, 10000)
    if name != "plain":  # the plain recipe runs as students run it; every other case as train.py does
        keep_freed_memory()
    if name in ("plain", "plain_malloc"):
        result = case_plain(args, device, n_train, n_eval)
    elif name == "compute":
        precision = pick_precision("auto", device)
        result = case_compute(args, device, 3 if args.quick else 430, precision)  # 430: one epoch of steps
        result["precision"] = precision
    else:
        precision = "fp32" if name == "fp32" else pick_precision("auto", device)
        result = case_ours(args, device, n_train, n_eval, precision, compile_model=(name == "compiled"))
        result["precision"] = precision
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def measure(args, name):
    """A case's results: in a process of its own, so that its peak memory is its own (--quick: here, since
    its numbers mean nothing anyway, and each process would cost a start of Python and torch)."""
    if args.quick:
        return run_case(args, name)
    common_flags = ["--device", args.device, "--data-dir", args.data_dir] + (
        ["--mirror", args.mirror] if args.mirror else []
    )
    out, _, _ = child(["bench.py", "--case", name, *common_flags])
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


# ---------------------------------------------------------------- the parent: table and seeds


def child(argv):
    """Run `python argv...`, return (stdout, peak RSS in MiB of that process alone, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, cwd=HERE, **utf8_child())
    out = proc.stdout.read()
    peak = None
    if hasattr(os, "wait4"):  # wait4 gives this child's own peak memory (POSIX only)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode, peak = os.waitstatus_to_exitcode(status), maxrss_mib(usage.ru_maxrss)
    else:
        proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed with status {proc.returncode}")
    return out, peak, seconds


def table(args):
    device = pick_device(args.device)
    auto = pick_precision("auto", device)
    cases = [
        ("plain", "plain DataLoader, batch 64, fp32"),
        ("plain_malloc", "plain DataLoader + keep_freed_memory()"),
        ("fp32", "ours, fp32"),
    ]
    if auto != "fp32":
        cases.append(("auto", f"ours, {auto} (--precision auto)"))
    if not args.quick:
        cases.append(("compiled", f"ours, {auto}, --compile"))
    print(
        f"Machine: {machine()}, {use_all_cores()} cores usable, torch {torch.__version__}, device {device}"
        + (
            "  [--quick: 1,000-2,000 images per case, all in one process; the numbers mean nothing]"
            if args.quick
            else ""
        )
    )
    header = ["case", "train img/s", "eval img/s", "1-epoch s", "test acc", "peak RSS MiB"]
    rows = []
    for name, label in cases:
        r = measure(args, name)
        rows.append(
            [
                label,
                f"{r['train_ips']:,.0f}",
                f"{r['eval_ips']:,.0f}",
                f"{r['epoch_s']:.1f}",
                f"{100 * r['test_acc']:.2f}%",
                mib(r["peak_rss_mib"]),
            ]
        )
        print(f"  done: {label}", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))
    ips = {name: float(r[1].replace(",", "")) for (name, _), r in zip(cases, rows)}
    best = max(v for name, v in ips.items() if not name.startswith("plain"))
    print(
        f"Training throughput, best of ours / plain DataLoader: {best / ips['plain']:.1f}x "
        f"(/ plain with the allocator setting: {best / ips['plain_malloc']:.1f}x)"
    )
    r = measure(args, "compute")
    print(
        f"Compute alone, ours in {r['precision']}: {r['train_ips']:,.0f} img/s = {r['train_ips'] / ips['plain']:.1f}x "
        "plain (our training step repeated on one batch in memory: no data path, no logging). "
        "A loop near this rate has no overhead left to remove at this precision."
    )
    print(
        "train img/s: one epoch's training loop over the same 55,000 images, first steps included "
        "(and, compiled, the compiling)."
    )
    print(
        "1-epoch s: plain = that training loop; ours = train.train() for one epoch "
        "(model, training, validation and test evaluation, logging, checkpoint)."
    )


def seeds(args):
    """Whole `python train.py` runs, timed from process start to exit, one per seed."""
    extra = shlex.split(args.train_args)
    print(f"Machine: {machine()}, {use_all_cores()} cores usable, torch {torch.__version__}")
    print(f"Command: python train.py {args.train_args} --seed S   (S = 1..{args.seeds})")
    rows, accs, walls, rss = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(1, args.seeds + 1):
            argv = [
                "train.py",
                *extra,
                "--seed",
                str(s),
                "--device",
                args.device,
                "--data-dir",
                args.data_dir,
                "--logdir",
                os.path.join(tmp, "logs"),
                "--run-name",
                f"seed{s}",
                "--checkpoint",
                os.path.join(tmp, f"net{s}.pth"),
            ] + (["--mirror", args.mirror] if args.mirror else [])
            out, peak, wall = child(argv)
            ckpt = torch.load(os.path.join(tmp, f"net{s}.pth"), weights_only=True)
            accs.append(ckpt["test_acc"]), walls.append(wall), rss.append(peak)
            rows.append(
                [
                    s,
                    f"{wall:.1f}",
                    ckpt["epoch"],
                    f"{100 * ckpt['val_acc']:.2f}%",
                    f"{100 * ckpt['test_acc']:.2f}%",
                    mib(peak),
                ]
            )
            print(f"  seed {s}: test {100 * ckpt['test_acc']:.2f}% in {wall:.1f} s", file=sys.stderr, flush=True)
    print(markdown_table(["seed", "wall s", "best epoch", "val acc", "test acc", "peak RSS MiB"], rows))
    print(
        f"Median test accuracy {100 * statistics.median(accs):.2f}% (min {100 * min(accs):.2f}%), "
        f"median wall time {statistics.median(walls):.1f} s, peak RSS {mib(None if None in rss else max(rss))} MiB"
    )


def draw_latency(args):
    """draw.py's latency as the page sees it, HTTP included.

    The real server in its own process, as python draw.py runs (in this process, the clients' threads
    would share its interpreter lock); MNIST test digits drawn as dark ink on a white 280x280 canvas,
    POSTed one at a time, then from 8 threads at once.
    """

    n, threads, each = (10, 2, 5) if args.quick else (100, 8, 25)
    images, _ = load_split(False, args.data_dir, args.mirror)
    bodies = []
    for digit in images[:n].numpy():
        canvas = Image.new("L", (280, 280), 255)
        canvas.paste(Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BILINEAR), (40, 40))
        bodies.append(io.BytesIO())
        canvas.save(bodies[-1], "PNG")

    def post(body, path="/predict"):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", path, body.getvalue(), {"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status == 200, 1000 * (time.perf_counter() - t0)

    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "draw.py"), "--checkpoint", args.draw, "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        **utf8_child(),
    )
    try:
        port = next(
            (int(m.group(1)) for line in proc.stdout if (m := re.match(r"Serving http://[\d.]+:(\d+)/", line))), None
        )
        if port is None:
            raise SystemExit(2)  # draw.py has said why, on stderr
        post(bodies[0])  # the first request pays for warming up
        alone = [post(b)[1] for b in bodies]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            burst = [
                r
                for rs in pool.map(lambda k: [post(bodies[(k * each + j) % n]) for j in range(each)], range(threads))
                for r in rs
            ]
        seconds = time.perf_counter() - t0
        kinds = {}  # the requests of the page's explain and attack panels, each kind after a warm-up
        for path in EXPLAIN_REQUESTS:
            post(bodies[0], path)
            kinds[path] = [post(b, path) for b in bodies]
    finally:
        proc.terminate()
        proc.wait()

    def p95(ms):
        return statistics.quantiles(ms, n=20)[-1]

    ms = [m for _, m in burst]
    print(f"Machine: {machine()}, {use_all_cores()} cores usable, torch {torch.__version__}; draw.py with {args.draw}")
    print(
        f"one at a time: median {statistics.median(alone):.1f} ms, p95 {p95(alone):.1f} ms "
        f"({n} drawings of 280x280 px, each a POST /predict answered with every layer's activations)"
    )
    print(
        f"{threads} threads x {each} at once: {sum(ok for ok, _ in burst)}/{len(burst)} answered in {seconds:.1f} s "
        f"({len(burst) / seconds:.0f} per second), median {statistics.median(ms):.1f} ms, p95 {p95(ms):.1f} ms"
    )
    for path, results in kinds.items():
        ms = [m for _, m in results]
        print(
            f"POST {path}: {sum(ok for ok, _ in results)}/{len(results)} answered one at a time, "
            f"median {statistics.median(ms):.1f} ms, p95 {p95(ms):.1f} ms"
        )
    print(
        f"Load average while measuring (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load_average())} "
        f"on {use_all_cores()} cores"
    )
    return 0


# What the page asks once a drawing is still: the map for the digit read, then for another digit (a
# click on its bar), and the attack at the slider's start and end, towards any digit or a chosen one.
EXPLAIN_REQUESTS = (
    "/explain",
    "/explain?target=3",
    "/attack?eps=0.1&target=any&method=pgd",
    "/attack?eps=0.3&target=any&method=pgd",
    "/attack?eps=0.3&target=3&method=pgd",
    "/attack?eps=0.1&target=any&method=fgsm",
)


def parts(args):
    """Milliseconds per batch of each part of a training step, as python train.py runs it on this machine.

    Each part is timed over many batches, and the parts in turn, five rounds: the median of the rounds
    (a machine that slows down while it runs slows every part alike), and their spread (min to max).
    The last row times the step with every part on, as train.py runs it: the step plus the parts above
    it (not their "of which" rows), within their spread, unless a part is measured wrongly
    (tests/test_bench.py checks it).
    """
    use_all_cores()
    keep_freed_memory()
    device = pick_device(args.device)
    precision = pick_precision("auto", device)
    targs = settings.parse(["--device", device.type])
    images, labels = load_split(True, args.data_dir, args.mirror)
    x = normalize(images[: targs.batch_size]).to(device).contiguous(memory_format=torch.channels_last)
    y = labels[: targs.batch_size].to(device)
    # The augmentation is timed as train.py calls it, on AUGMENT_AT_ONCE batches at once (lab/data.py), per batch.
    at_once = targs.batch_size * AUGMENT_AT_ONCE
    group = (normalize(images[:at_once]).to(device), labels[:at_once].to(device))
    generator = torch.Generator(device=device).manual_seed(1)
    loss_fn = train.make_loss(targs)
    augmenter = augment.make(targs, generator)

    def stepper(options, images=lambda: x):
        """A model built with `options` and a training step of it on the images that images() gives."""
        torch.manual_seed(1)
        model = build_model("cnn", **options).to(device).to(memory_format=torch.channels_last)
        optimizer = train.make_optimizer(targs, model.parameters(), device)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        return model, lambda: train.train_step(model, optimizer, scaler, loss_fn, (images(), y, 1.0), precision)

    def augmented():
        """Batches as train.py draws them, shuffled and augmented, for ever."""
        shuffle = torch.Generator().manual_seed(1)
        while True:
            yield from training_batches(group, targs.batch_size, shuffle, augmenter)

    default = settings.model_options(targs)  # batch norm, where the default run places it
    _, step = stepper({})
    model_bn, step_bn = stepper(default)
    average = train.make_average(targs, model_bn)[1]
    feed = augmented()
    model_all, step_all = stepper(default, lambda: next(feed)[0])  # a model of its own: the rows above time theirs
    average_all = train.make_average(targs, model_all)[1]
    blank = group[0] - augment.BACKGROUND
    alone, with_bn = "the step itself (forward, backward, optimiser)", "batch norm (added to the step)"
    timed = {
        alone: step,
        with_bn: step_bn,
        f"augmentation, all of it (--rotate {targs.rotate:g} --scale {targs.scale:g} --shift {targs.shift:g} "
        f"--thickness {targs.thickness:g} --lowres {targs.lowres:g})": lambda: augmenter(group[0]),
        "  of which the pen (--thickness)": lambda: augment.pen_width(blank, generator, targs.thickness),
        "  of which the coarse grid (--lowres)": lambda: augment.coarser(blank, generator, targs.lowres),
        f"the averaged weights (--ema {targs.ema:g})": lambda: average(1000),
        "the step with every part on (as train.py runs it)": lambda: (step_all(), average_all(1000)),
    }
    per_call = dict.fromkeys(list(timed)[2:5], AUGMENT_AT_ONCE)  # the augmentation's rows: batches per call
    repeats = 3 if args.quick else 40
    rounds = {name: [] for name in timed}
    for _ in range(3 if args.quick else 5):
        for name, fn in timed.items():
            fn()  # warm: the first call of a shape picks its kernels
            sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            sync(device)
            rounds[name].append(1000 * (time.perf_counter() - t0) / repeats / per_call.get(name, 1))
    rounds[with_bn] = [b - a for a, b in zip(rounds[alone], rounds[with_bn])]  # each round's own difference
    ms = {name: statistics.median(r) for name, r in rounds.items()}
    step_ms = ms[alone]
    print(
        f"Machine: {machine()}, {use_all_cores()} cores usable, torch {torch.__version__}, device {device}, "
        f"{precision}, batches of {targs.batch_size}"
    )
    rows = [
        [name, f"{v:.2f}", f"{100 * v / step_ms:.0f}%", f"{min(rounds[name]):.2f} to {max(rounds[name]):.2f}"]
        for name, v in ms.items()
    ]
    print(markdown_table(["part", "ms per batch", "of the step", "rounds: min to max"], rows))
    return 0


def load_average():
    """The machine's load average (1, 5, 15 minutes): how busy others kept it; (nan,)*3 where unknown (Windows)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return (float("nan"),) * 3


def page_row(spacing, counts):
    """One row of --pages's table, from the counts of its sheets: score()'s five and the number of sheets."""
    digits, right, lines, lines_right, in_order, sheets = counts
    return [
        spacing,
        f"{sheets:,}",
        f"{digits:,}",
        f"{100 * right / digits:.1f}%",
        f"{lines:,}",
        f"{100 * lines_right / lines:.1f}%",
        f"{int(in_order)}/{sheets}",
    ]


def pages(args):
    """How well a checkpoint reads pages: sheets of MNIST test digits (reading/sheets.py), each spacing apart."""
    from reading.pages import classifier, read  # here: only --pages needs them (scipy's import takes 0.4 s)
    from reading.reader import reader_from_flag  # (the same)
    from reading.sheets import SPACINGS, make_sheets, score  # (the same)

    torch.set_num_threads(1)  # one page is small work: as draw.py reads it, and predict.py nearly
    model, ckpt = load_checkpoint(args.pages)
    classify = classifier(model, ckpt)
    reader = reader_from_flag(args.reader)
    images, labels = load_split(False, args.data_dir, args.mirror)
    n = PAGE_SHEETS_QUICK if args.quick else PAGE_SHEETS
    # seed 1: reading/pages.py's constants were chosen on the sheets of seed 0
    totals = {spacing: [0] * 6 for spacing in SPACINGS}
    t0 = time.perf_counter()
    for sheet in make_sheets(images.numpy(), labels.numpy(), n, seed=1):
        page = read(sheet.image, classify, reader)
        counts = score(sheet, page.lines, [(d.line, d.box) for d in page.digits])
        totals[sheet.spacing] = [a + b for a, b in zip(totals[sheet.spacing], (*counts, 1))]
    seconds = time.perf_counter() - t0
    rows = [page_row(spacing, counts) for spacing, counts in totals.items()]
    goal = [counts for spacing, counts in totals.items() if spacing != "overlapping"]
    goal_counts = [sum(counts) for counts in zip(*goal)]
    rows.append(page_row("wide to touching", goal_counts))
    digits = goal_counts[0]
    sheets = goal_counts[5]
    print(
        f"Machine: {machine()}, torch {torch.__version__}; {args.pages}: {ckpt['model']}, epoch {ckpt.get('epoch')}, "
        f"MNIST test accuracy {100 * (ckpt.get('test_acc') or 0):.2f}%; reader of touching digits: "
        + (args.reader or "reader.pth" if reader is not None else "none")
    )
    print(
        f"Sheets of MNIST test digits as a phone photographs them (reading/sheets.py, seed 1): 1-4 lines of 3-8 "
        f"digits, {n} sheets of each spacing" + ("  [--quick: too few to mean much]" if args.quick else "")
    )
    print(markdown_table(["spacing", "sheets", "digits", "digits right", "lines", "lines right", "order right"], rows))
    print(
        f"{seconds / sheets * 1000:.0f} ms a sheet, {seconds / digits * 1000:.1f} ms a digit, on one core. "
        "Digits right: "
        "the digits less the changes, additions and drops that make each line read into the truth; lines "
        "right: read exactly; order right: the digits found come in reading order, line by line. "
        "'wide to touching': the goal's sheets; 'overlapping' (digits written over each other) is beyond it."
    )
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    if args.pages:
        return pages(args)
    if args.draw:
        return draw_latency(args)
    if args.parts:
        return parts(args)
    if args.case:
        print("RESULT " + json.dumps(run_case(args, args.case)))
        return 0
    if args.seeds > 0:
        return seeds(args)
    return table(args)


if __name__ == "__main__":
    run_script(main)
