"""Train a grid of runs in one go: every combination of the values given.

    python sweep.py --lr 0.01 0.001 0.0001 --epochs 5
    python sweep.py --model mlp cnn2 cnn --optimizer sgd adam --epochs 3 --name models
    python sweep.py --seed 1 2 3 --augment no yes --epochs 3     # how much is chance, how much the change?
    python sweep.py --optimizer sgd:lr=0.05 adam:lr=0.001 --recipe plain   # each optimiser at its own rate
    python report.py boardlog/models             # then: tables and curves

Every training setting of train.py is a grid option here: give it several values and each is tried;
give it one and it applies to every run, like every other train.py option (--data-dir, --device,
--logdir, ...). On/off settings take yes and no. A value can carry settings paired with it,
VALUE:SETTING=VALUE[:...], for a fair comparison: sgd:lr=0.05 runs sgd at 0.05 and adam:lr=0.001
adam at 0.001, not each at both. The data is read once and shared by all runs. Each
run logs to boardlog/<sweep>/<run>/, named by the values that vary (e.g. model=cnn_lr=0.01), and keeps
its best model there as net.pth, so that test.py and report.py can use every run of the table.

    python sweep.py --lr 0.01 0.001 0.0001 0.00001 --jobs 4   # 4 runs at once: one per GPU, or sharing the cores

With --jobs N each run is a `python train.py` of its own, up to N at once, each on its own GPU
(round robin) where there are GPUs, else with 1/N of the CPU cores.

If the sweep stops (Ctrl-C, a crash), run it again with the --name it printed:
finished runs are skipped and a run stopped half way carries on where it was.
"""

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import train  # to run its whole job, train.train(), once per run
from lab import runs, settings
from lab.checkpoint import refuse_if_locked
from lab.cli import (
    UserError,
    fmt_time,
    make_parser,
    own_group,
    popen_hearing_ctrl_c,
    positive_int,
    run_script,
    shell_join,
    utf8_child,
)
from lab.data import SPLIT, ensure_mnist, load_data
from lab.device import cores, pick_device
from lab.files import make_folder

SET_PER_RUN = ("resume", "run_name", "checkpoint")  # the sweep chooses these, never the user
TRAIN = [sys.executable, str(Path(__file__).resolve().with_name("train.py"))]  # one run, with --jobs N
YES, NO = ("yes", "on", "true", "1"), ("no", "off", "false", "0")
BY_NAME = {settings.FLAG[dest][2:]: dest for dest in settings.TRAINING}  # "batch-size" -> "batch_size"


def parser():
    """sweep.py's own flags, and a grid flag for every training setting of train.py (lab/settings.py)."""
    p = make_parser(__doc__)
    p.epilog = "Every other option is train.py's (see python train.py --help) and applies to every run."
    grid = p.add_argument_group("the grid: several values each, and every combination is one run")
    for dest in settings.TRAINING:
        _, action = settings.ACTIONS[dest]
        switch = dest in settings.SWITCHES
        # an on/off setting alone means on, as in train.py: sweep.py --augment --epochs 20
        metavar = "yes|no" if switch else action.metavar or "|".join(action.choices or ["V"])
        grid.add_argument(
            settings.FLAG[dest], dest=dest, nargs="*" if switch else "+", metavar=metavar, help=action.help
        )
    p.add_argument(
        "--name",
        default=None,
        help="the sweep's folder under --logdir (default: sweep-<date>-<time>); "
        "give an existing sweep's name to continue it",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="runs at once, each a python train.py of its own: one per GPU where there are GPUs, "
        "else sharing the CPU cores (default: 1, one after the other in this process)",
    )
    return p


def as_value(dest, text):
    """A grid value as the setting's own: e.g. ("lr", "0.01") -> 0.01, ("augment", "no") -> False."""
    if dest not in settings.SWITCHES:
        return value_of(dest, text)
    if text.lower() in YES + NO:
        return text.lower() in YES
    raise UserError(f"{settings.FLAG[dest]} takes yes or no in a sweep, not {text!r}")


def value_of(dest, text):
    """A setting's value from its text, as its flag reads it (sweep.py's grid values): its type and choices."""
    _, action = settings.ACTIONS[dest]
    try:
        value = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise UserError(f"argument {settings.FLAG[dest]}: {e}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        raise UserError(f"argument {settings.FLAG[dest]}: invalid choice: {text!r} (choose from {choices})")
    return value


def as_flags(args):
    """The flags that give a run's settings (settings.parse() or changed()) to a python train.py of its own
    (--jobs N): those typed, and those the sweep set."""
    argv = []
    for dest in sorted(args.given, key=list(settings.ACTIONS).index):
        value = getattr(args, dest)
        if dest in settings.SWITCHES:
            argv.append(settings.FLAG[dest] if value else "--no-" + settings.FLAG[dest][2:])
        elif value is True:  # a store_true flag: --compile
            argv.append(settings.FLAG[dest])
        elif isinstance(value, (list, tuple)):  # --channels 32,64
            argv += [settings.FLAG[dest], ",".join(map(str, value))]
        elif value is not None:
            argv += [settings.FLAG[dest], str(value)]
    return argv


def given_at(dest, argv):
    """Where on the command line a setting's flag was given (also as --flag=value); after all, if not found."""
    flag = settings.FLAG[dest]
    return next((i for i, a in enumerate(argv) if a == flag or a.startswith(flag + "=")), len(argv))


def paired(dest, text):
    """A grid value with the settings paired to it: "sgd:lr=0.05:momentum=0.95" -> ("sgd", {"lr": "0.05", ...})."""
    value, *pairs = text.split(":")
    extras = {}
    for pair in pairs:
        name, _, setting = pair.partition("=")
        if not value or not setting:
            raise UserError(
                f"{settings.FLAG[dest]} {text}: pair other settings with a value as "
                f"VALUE:SETTING=VALUE, e.g. --optimizer sgd:lr=0.05 adam:lr=0.001"
            )
        other = BY_NAME.get(name.replace("_", "-"))
        if other is None or other == dest:
            raise UserError(
                f"{settings.FLAG[dest]} {text}: {name!r} is not another training setting (see python train.py --help)"
            )
        extras[other] = setting
    return value, extras


def plan_runs(args, rest, name, argv):
    """(train's settings for the whole sweep, its folder, one (run name, label, train args, flags) per combination).

    Every run's options are checked here, before any run starts.
    """
    base = settings.parse(rest)  # checks the pass-through options once, with train's own messages
    sweep_dir = Path(base.logdir) / name
    for dest in SET_PER_RUN:
        if dest in base.given:
            raise UserError(f"--{dest.replace('_', '-')} is set by the sweep for each run: leave it out")
    # Values stay as typed (dicts keep order and drop repeats): "lr=1e-3" names the folder as the user wrote it.
    grid = [
        (dest, [paired(dest, v) for v in dict.fromkeys(getattr(args, dest) or ["yes"])])
        for dest in settings.TRAINING
        if getattr(args, dest) is not None
    ]
    grid.sort(key=lambda option: given_at(option[0], argv))  # in the order typed: the first varies slowest
    for dest, values in grid:
        for other in {o for _, extras in values for o in extras} & {d for d, _ in grid}:
            raise UserError(
                f"{settings.FLAG[other]} is paired with {settings.FLAG[dest]} values and is a grid "
                "option too: give it one way"
            )
    varies = [dest for dest, values in grid if len(values) > 1]
    runs_ = []
    for values in itertools.product(*(vals for _, vals in grid)):
        chosen = {}
        named = []
        for (dest, _), (value, extras) in zip(grid, values):
            chosen.update({dest: value, **extras})
            if dest in varies:  # folders are named by the values that vary, and what is paired with them
                named += [(dest, value), *extras.items()]
        run = "_".join(f"{settings.FLAG[d][2:]}={v}" for d, v in named) or "run"
        label = " ".join(f"{settings.FLAG[d][2:]}={v}" for d, v in named) or "the one run"
        values = {dest: as_value(dest, text) for dest, text in chosen.items()}
        values.update({"logdir": str(sweep_dir), "run_name": run, "checkpoint": str(sweep_dir / run / "net.pth")})
        run_args = settings.changed(base, values)  # as if typed after the options in `rest`
        settings.model_options(run_args)  # e.g. --dropout with --model mlp: fail now, not at run 5
        runs_.append((run, label, run_args, as_flags(run_args)))  # the flags, for --jobs N
    return base, sweep_dir, runs_


def state_of(run_dir, run_args):
    """What to do with a run folder: 'new', 'done' (skip it), 'resume' or 'restart'.

    Returns (what, saved state or None). A folder with no last.pt never finished an
    epoch, so whatever it holds (a model graph, half an epoch's events) is stale.
    """
    refuse_if_locked(run_args.checkpoint)  # another sweep of the same --name is training it now: leave it alone
    state_file = run_dir / runs.STATE_FILE
    if not state_file.is_file():
        return ("restart" if run_dir.exists() else "new"), None
    state = runs.read_state(state_file, hint=f"delete {run_dir} to train that run again")
    saved = state["settings"][0]
    wanted = settings.training(run_args)
    for key in wanted:
        if saved.get(key) != wanted[key]:
            raise UserError(
                f"{run_dir} was trained with {key}={saved.get(key)}, but this sweep asks for "
                f"{key}={wanted[key]}: give the sweep another --name"
            )
    return ("done" if state["epoch"] >= run_args.epochs else "resume"), state


def run_here(plan, base, sweep_dir, t_start):
    """--jobs 1: the runs one after the other in this process, the data read once. Returns {run: best}."""
    n = len(plan)
    data = {}
    durations = []
    results = {}
    for i, (run, label, run_args, _, what, state) in enumerate(plan, 1):
        if what == "done":
            continue
        left = sum(w != "done" for *_, w, _ in plan[i - 1 :])
        eta = f", ~{fmt_time(sum(durations) / len(durations) * left)} left" if durations else ""
        print(f"\n[run {i}/{n}] {label}: {fmt_time(time.perf_counter() - t_start)} elapsed{eta}", flush=True)
        prepare(sweep_dir / run, what, run_args)
        split = tuple(getattr(run_args, k) for k in SPLIT)  # all the data depends on: read once for each
        if split not in data:
            data = {split: load_data(run_args, pick_device(base.device))}
        t0 = time.perf_counter()
        summary = train.train(run_args, data[split])
        durations.append(time.perf_counter() - t0)
        if summary["interrupted"]:
            raise KeyboardInterrupt
        results[run] = {
            "val_acc": summary["best_val_acc"],
            "epoch": summary["best_epoch"],
            "test_acc": summary["test_acc"],
        }
    return results


def prepare(run_dir, what, run_args):
    """Clear a run folder that never finished an epoch; point a half-done run at its saved state."""
    if what == "restart":
        print(f"(its earlier attempt finished no epoch: starting {run_dir} afresh)")
        try:
            shutil.rmtree(run_dir)
        except OSError as e:  # e.g. a read-only disk
            raise UserError(
                f"cannot clear {run_dir} ({e.strerror or e}): delete it, or give the sweep another --name"
            ) from None
    if what == "resume":
        run_args.resume = str(run_dir)


def slots(jobs, device):
    """The environment of each of the `jobs` places a run can go: its own GPU (round robin over
    the GPUs, so N > GPUs puts several runs on one) where there are GPUs, and 1/jobs of the cores."""
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # the ids the user left us, if they chose some
    ids = visible.split(",")[:gpus] if visible else [str(i) for i in range(gpus)]
    threads = {"OMP_NUM_THREADS": str(max(1, cores() // jobs))}  # train.py's use_all_cores() takes this
    return [{**threads, "CUDA_VISIBLE_DEVICES": ids[k % gpus]} if gpus else threads for k in range(jobs)]


def time_left(durations, elapsed, queued, jobs):
    """Seconds until the sweep ends if every run takes as long as the finished ones did on average:
    the running runs finish, and each queued run goes to the place that frees up first."""
    mean = sum(durations) / len(durations)
    free = sorted([max(mean - e, 0.0) for e in elapsed] + [0.0] * (jobs - len(elapsed)))
    for _ in range(queued):
        free[0] += mean
        free.sort()
    return max(free)


def launch(argv, slot, prefix):
    """Start `python train.py ARGV` in `slot`'s environment. Returns it and the threads that copy
    its output line by line, each line under `prefix`: runs at once do not cut into each other's lines."""
    # Its own group: a Ctrl-C in the terminal reaches the sweep alone, which passes it on once (stop()).
    group, _ = own_group()
    proc = popen_hearing_ctrl_c(
        TRAIN + argv,
        **utf8_child({**os.environ, **slot, "PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        **group,
    )

    def copy(stream, out):
        for line in stream:
            if line.strip():
                out.write(prefix + line)  # one write per line
                out.flush()

    threads = [
        threading.Thread(target=copy, args=pipes, daemon=True)
        for pipes in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
    ]
    for t in threads:
        t.start()
    return proc, threads


def stop(running):
    """Ctrl-C for every run still going (each keeps what it saved, and exits), then wait for them."""
    _, ctrl_c = own_group()  # SIGINT, or on Windows CTRL_BREAK_EVENT
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(ctrl_c)
    for proc, (*_, threads) in running.items():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        for t in threads:
            t.join()  # their last lines


def run_apart(plan, base, sweep_dir, jobs, t_start):
    """--jobs N: each run a `python train.py` of its own, up to N at once. Returns {run: best}, or None
    when a run failed. Either, or Ctrl-C (KeyboardInterrupt), stops the runs still going."""
    ensure_mnist(base.data_dir, base.mirror)  # fetched here once, if need be, rather than raced by N runs
    n = len(plan)
    free = slots(jobs, base.device)
    durations = []
    results = {}
    queue = [(i, *item) for i, item in enumerate(plan, 1) if item[4] != "done"]
    running = {}  # process -> (i, run, label, slot, start time, the threads that copy its output)
    try:
        while queue or running:
            while queue and free:
                i, run, label, run_args, argv, what, _ = queue.pop(0)
                prepare(sweep_dir / run, what, run_args)
                slot = free.pop(0)
                where = (
                    f"GPU {slot['CUDA_VISIBLE_DEVICES']}"
                    if "CUDA_VISIBLE_DEVICES" in slot
                    else f"{slot['OMP_NUM_THREADS']} threads"
                )
                print(
                    f"[run {i}/{n}] {label}: started ({where}), {fmt_time(time.perf_counter() - t_start)} elapsed",
                    flush=True,
                )
                proc, threads = launch(
                    argv + (["--resume", run_args.resume] if run_args.resume else []), slot, f"[run {i}/{n}] "
                )
                running[proc] = (i, run, label, slot, time.perf_counter(), threads)
            time.sleep(0.2)  # then look for runs that have ended
            for proc in [p for p in running if p.poll() is not None]:
                i, run, label, slot, t0, threads = running.pop(proc)
                for t in threads:
                    t.join()  # its last lines before ours
                if proc.returncode != 0:
                    print(
                        f"[run {i}/{n}] {label}: stopped with exit status {proc.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    stop(running)
                    return None
                free.append(slot)
                durations.append(time.perf_counter() - t0)
                results[run] = runs.read_state(sweep_dir / run / runs.STATE_FILE)["best"]
                left = time_left(durations, [time.perf_counter() - r[4] for r in running.values()], len(queue), jobs)
                print(
                    f"[run {i}/{n}] {label}: done in {fmt_time(durations[-1])}, best val "
                    f"{100 * results[run]['val_acc']:.2f}%; {n - len(queue) - len(running)} of {n} done"
                    + (f", ~{fmt_time(left)} left" if queue or running else ""),
                    flush=True,
                )
    except KeyboardInterrupt:
        stop(running)
        raise
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parser().parse_known_args(argv)
    name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    if not name.strip() or Path(name).name != name or name in (".", ".."):
        raise UserError(f"--name {name!r} must be a plain folder name, without slashes")
    base, sweep_dir, runs = plan_runs(args, rest, name, argv)
    make_folder(sweep_dir, "--logdir")  # a read-only or mistyped --logdir: one line now, not one per run
    plan = [
        (run, label, run_args, run_argv, *state_of(sweep_dir / run, run_args))
        for run, label, run_args, run_argv in runs
    ]

    again = shell_join(["python", "sweep.py", *argv, *([] if args.name else ["--name", name])])
    n, todo = len(plan), sum(what != "done" for *_, what, _ in plan)
    print(
        f"Sweep {sweep_dir}: {n} run{'s' * (n != 1)}, {todo} to train."
        + (f" If it stops, continue with:\n  {again}" if todo else "")
    )

    for i, (run, label, *_, what, state) in enumerate(plan, 1):
        if what == "done":
            print(f"[run {i}/{n}] {label}: finished already, skipped")
    stopped = f"\nSweep stopped. Continue it (finished runs are skipped) with:\n  {again}"
    t_start = time.perf_counter()
    try:
        if args.jobs == 1:
            results = run_here(plan, base, sweep_dir, t_start)
        else:
            results = run_apart(plan, base, sweep_dir, args.jobs, t_start)
    except KeyboardInterrupt:
        print(stopped, file=sys.stderr)
        return 130
    if results is None:  # a run failed: its own output says why
        print(stopped, file=sys.stderr)
        return 1
    results = {run: state["best"] if what == "done" else results[run] for run, *_, what, state in plan}

    print(
        f"\nSweep {sweep_dir} done: {n} run{'s' * (n != 1)}"
        + (f" ({n - todo} finished before)" if todo < n else "")
        + f" in {fmt_time(time.perf_counter() - t_start)}."
    )
    width = max(len(run) for run in results)
    print(f"  {'run':<{width}}  best val  epoch     test")
    for run, best in results.items():
        print(f"  {run:<{width}}  {100 * best['val_acc']:7.2f}%  {best['epoch']:>5}  {100 * best['test_acc']:6.2f}%")
    print(f"Tables and curves:  {shell_join(['python', 'report.py', sweep_dir])}")
    return 0


if __name__ == "__main__":
    run_script(main)
