"""Train a grid of runs in one go: every combination of the values given.

    python sweep.py --lr 0.01 0.001 0.0001 --epochs 5
    python sweep.py --model mlp cnn2 cnn --optimizer sgd adam --epochs 3 --name models
    python report.py boardlog/models             # then: tables and curves

Any other train.py option (--epochs, --limit, --augment, --data-dir, ...) applies
to every run. The data is read once and shared by all runs. Each run logs to
boardlog/<sweep>/<run>/ and keeps its best model there as net.pth, so test.py
and report.py can use every run of the table.

If the sweep stops (Ctrl-C, a crash), run it again with the --name it printed:
finished runs are skipped and a run stopped half way carries on where it was.
"""
import argparse
import itertools
import shlex
import shutil
import sys
import time
from pathlib import Path

import train
from checkpoint import load_file
from common import UserError, make_parser, pick_device, run_script
from net import MODELS

# The options a sweep can vary: (dest in train's args, flag, short name in run folders, help).
GRID = [("model", "--model", "model", f"networks, any of: {' '.join(MODELS)}"),
        ("lr", "--lr", "lr", "learning rates, e.g. 0.01 0.001 0.0001"),
        ("batch_size", "--batch-size", "bs", "batch sizes, e.g. 32 64 128"),
        ("optimizer", "--optimizer", "opt", "optimisers, e.g. sgd adam"),
        ("scheduler", "--scheduler", "sched", "learning-rate schedules, e.g. step none"),
        ("seed", "--seed", "seed", "seeds, e.g. 1 2 3: how much do runs differ by chance alone?")]
SET_PER_RUN = ("resume", "run_name", "checkpoint")  # the sweep chooses these, never the user


def parse_args(argv):
    """Returns (sweep options, the remaining arguments, which go to train.py's parser)."""
    p = make_parser(__doc__.split("\n")[0])
    p.epilog = ("A grid option left out takes train.py's default. Every other option is train.py's "
                "(see python train.py --help) and applies to every run, e.g. --epochs 5 --limit 10000 --augment.")
    for dest, flag, _, text in GRID:
        p.add_argument(flag, dest=dest, nargs="+", metavar="V", help=text)
    p.add_argument("--name", default=None,
                   help="the sweep's folder under --logdir (default: sweep-<date>-<time>); "
                        "give an existing sweep's name to continue it")
    return p.parse_known_args(argv)


def plan_runs(args, rest, name):
    """(train's args for the whole sweep, its folder, one (run name, label, train args) per combination).

    Every run's options are checked here, before any run starts.
    """
    defaults = train.parse_args([])
    base = train.parse_args(rest)  # checks the pass-through options once, with train's own messages
    sweep_dir = Path(base.logdir) / name
    for dest in SET_PER_RUN:
        if getattr(base, dest) != getattr(defaults, dest):
            raise UserError(f"--{dest.replace('_', '-')} is set by the sweep for each run: leave it out")
    # Values stay as typed (dicts keep order and drop repeats): "lr=1e-3" names the folder as the user wrote it.
    grid = [(dest, flag, short, list(dict.fromkeys(getattr(args, dest))))
            for dest, flag, short, _ in GRID if getattr(args, dest)]
    runs = []
    for values in itertools.product(*(vals for *_, vals in grid)):
        # Folders are named by every option given on the command line, not only those with several
        # values, so adding a value to a list later keeps the names of the runs already done.
        run = "_".join(f"{short}={v}" for (_, _, short, _), v in zip(grid, values)) or "default"
        label = " ".join(f"{short}={v}" for (_, _, short, _), v in zip(grid, values)) or "default settings"
        run_args = train.parse_args(rest + [x for (_, flag, _, _), v in zip(grid, values) for x in (flag, v)])
        run_args.logdir, run_args.run_name = str(sweep_dir), run
        run_args.checkpoint = str(sweep_dir / run / "net.pth")
        train.model_options(run_args)  # e.g. --dropout with --model mlp: fail now, not at run 5
        runs.append((run, label, run_args))
    return base, sweep_dir, runs


def state_of(run_dir, run_args):
    """What to do with a run folder: 'new', 'done' (skip it), 'resume' or 'restart'.

    Returns (what, saved state or None). A folder with no last.pt never finished an
    epoch, so whatever it holds (a model graph, half an epoch's events) is stale.
    """
    state_file = run_dir / train.STATE_FILE
    if not state_file.is_file():
        return ("restart" if run_dir.exists() else "new"), None
    state = load_file(state_file, what="resume state", hint=f"delete {run_dir} to train that run again")
    saved, wanted = train.hparams_of(argparse.Namespace(**state["args"])), train.hparams_of(run_args)
    for key in wanted:
        # precision: saved is what 'auto' resolved to, and a resumed run keeps its own anyway
        if key != "precision" and saved.get(key) != wanted[key]:
            raise UserError(f"{run_dir} was trained with {key}={saved.get(key)}, but this sweep asks for "
                            f"{key}={wanted[key]}: give the sweep another --name")
    return ("done" if state["epoch"] >= run_args.epochs else "resume"), state


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parse_args(argv)
    name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    if not name.strip() or Path(name).name != name or name in (".", ".."):
        raise UserError(f"--name {name!r} must be a plain folder name, without slashes")
    base, sweep_dir, runs = plan_runs(args, rest, name)
    plan = [(run, label, run_args, *state_of(sweep_dir / run, run_args)) for run, label, run_args in runs]

    again = "python sweep.py " + shlex.join(argv + ([] if args.name else ["--name", name]))
    n, todo = len(plan), sum(what != "done" for *_, what, _ in plan)
    print(f"Sweep {sweep_dir}: {n} run{'s' * (n != 1)}, {todo} to train."
          + (f" If it stops, continue with:\n  {again}" if todo else ""))

    data, durations, results = None, [], {}
    t_start = time.perf_counter()
    try:
        for i, (run, label, run_args, what, state) in enumerate(plan, 1):
            if what == "done":
                print(f"[run {i}/{n}] {label}: finished already, skipped")
                results[run] = state["best"]
                continue
            left = sum(w != "done" for *_, w, _ in plan[i - 1:])
            eta = f", ~{train.fmt_time(sum(durations) / len(durations) * left)} left" if durations else ""
            print(f"\n[run {i}/{n}] {label}: {train.fmt_time(time.perf_counter() - t_start)} elapsed{eta}",
                  flush=True)
            if what == "restart":
                print(f"(its earlier attempt finished no epoch: starting {sweep_dir / run} afresh)")
                shutil.rmtree(sweep_dir / run)
            if what == "resume":
                run_args.resume = str(sweep_dir / run)
            if data is None:  # the data does not depend on the grid's options: read it once
                data = train.load_data(base, pick_device(base.device))
            t0 = time.perf_counter()
            summary = train.train(run_args, data)
            durations.append(time.perf_counter() - t0)
            if summary["interrupted"]:
                raise KeyboardInterrupt
            results[run] = {"val_acc": summary["best_val_acc"], "epoch": summary["best_epoch"],
                            "test_acc": summary["test_acc"]}
    except KeyboardInterrupt:
        print(f"\nSweep stopped at run {i}/{n}. Continue it (finished runs are skipped) with:\n  {again}",
              file=sys.stderr)
        return 130

    print(f"\nSweep {sweep_dir} done: {n} run{'s' * (n != 1)}"
          + (f" ({n - todo} finished before)" if todo < n else "")
          + f" in {train.fmt_time(time.perf_counter() - t_start)}.")
    width = max(len(run) for run in results)
    print(f"  {'run':<{width}}  best val  epoch     test")
    for run, best in results.items():
        print(f"  {run:<{width}}  {100 * best['val_acc']:7.2f}%  {best['epoch']:>5}  {100 * best['test_acc']:6.2f}%")
    print(f"Tables and curves:  python report.py {sweep_dir}")
    return 0


if __name__ == "__main__":
    run_script(main)
