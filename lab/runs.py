"""A training run's life: where it runs, its folder, new or resumed, last.pt, and what it says at the end.

A run lives in its folder under --logdir: TensorBoard's event files and last.pt, the state saved
after every epoch (model, optimiser, schedule, random-number states, best so far, settings), from
which `python train.py --resume` carries on as if it had never stopped. net.pth, the best model,
goes wherever --checkpoint says (lab/checkpoint.py), held by the run until it ends:

    with runs.start(args) as run:   # ... train; leaving the block, also by Ctrl-C or an error, frees net.pth
"""

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lab import distributed, settings
from lab.checkpoint import check_version, load_file, release_lock, take_lock
from lab.cli import UserError, fmt_time, shell_join
from lab.device import keep_freed_memory, pick_device, pick_precision, use_all_cores
from lab.files import make_folder, save_torch
from net import build_model, count_parameters

STATE_FILE = "last.pt"  # the resumable state, in the run's folder
STATE_FORMAT = "mnist-lab/run-state"
VERSION = 2  # 1: no format marker, settings as the whole argparse Namespace ("args"); 2: a settings record


@dataclass
class Run:
    args: argparse.Namespace  # the settings it runs with: a resumed run's own, with this command's machine settings
    device: torch.device
    precision: str  # what --precision resolved to: fp32, bf16 or fp16
    rank: int  # under torchrun, this process's number of `world`; else 0 of 1
    world: int
    dir: Path  # its folder: TensorBoard events and last.pt
    saved: dict = None  # what last.pt held (read_state), for a resumed run; None for a new run
    lock: object = None  # net.pth's lock (a filelock.FileLock) while this process holds it (rank 0 alone)
    started: float = field(default_factory=time.perf_counter)

    @property
    def settings_record(self):
        """The settings as net.pth and last.pt keep them (lab/settings.py's record)."""
        return settings.record(self.args, precision=self.precision)

    def __enter__(self):
        return self

    def __exit__(self, *error):  # the run is over, however it ended: another may use its net.pth
        if self.lock is not None:
            release_lock(self.lock)
            self.lock = None

    def save(self, state):
        """last.pt: the training state (train.py's TrainingState) with the run's settings record, after every epoch."""
        saved = {"format": STATE_FORMAT, "version": VERSION, "settings": self.settings_record, **state.state_dict()}
        save_torch(saved, self.dir / STATE_FILE)

    def say_start(self, model, data):
        n = {name: len(images) for name, (images, _) in data.items()}
        print(
            f"{self.args.model}: {count_parameters(model):,} parameters; training on {n['train']:,} images, "
            f"validating on {n['val']:,}, testing on {n['test']:,}; logging to {self.dir}"
        )

    def say_end(self, best, epochs_done, interrupted):
        """What to do next: after Ctrl-C, how to resume; else where the best model is and how to look at it."""
        if interrupted:
            self.say_interrupted(best, epochs_done)
        else:
            self.say_done(best)

    def say_interrupted(self, best, done):
        print(f"\nInterrupted during epoch {done + 1}.", file=sys.stderr)
        if best["epoch"]:
            print(
                f"The best model so far (epoch {best['epoch']}, val {100 * best['val_acc']:.2f}%) "
                f"is kept in {self.args.checkpoint}; logs are in {self.dir}.",
                file=sys.stderr,
            )
        if done > 0:
            resume = shell_join(["python", "train.py", "--resume", self.dir])
            print(f"Resume from epoch {done + 1} with: {resume}", file=sys.stderr)
        else:
            print("No epoch finished, so there is nothing to resume: run python train.py again.", file=sys.stderr)

    def say_done(self, best):
        print(
            f"\nBest validation accuracy {100 * best['val_acc']:.2f}% at epoch {best['epoch']}; "
            f"test accuracy of that model {100 * best['test_acc']:.2f}%."
        )
        print(f"Saved to {self.args.checkpoint}. Wall time {fmt_time(time.perf_counter() - self.started)}.")
        print(f"Evaluate it:  {shell_join(['python', 'test.py', '--checkpoint', self.args.checkpoint])}")
        print(f"Curves:       {shell_join(['tensorboard', '--logdir', self.args.logdir])}")

    def summary(self, best, interrupted, train_seconds, train_images):
        """What train() returns: where things are, the best epoch and its accuracies, and timings (`train_seconds`
        spent in this process's training steps, on `train_images` images)."""
        return {
            "run_dir": str(self.dir),
            "checkpoint": self.args.checkpoint,
            "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"],
            "test_acc": best["test_acc"],
            "seconds": time.perf_counter() - self.started,
            "interrupted": interrupted,
            "epochs": self.args.epochs,
            "train_seconds": train_seconds,
            "train_images": train_images,
        }


def start(args):
    """Everything before the first step: resume or not, threads, device and precision, torchrun, folders,
    and the lock on --checkpoint (rank 0's: it alone saves). Use it as `with start(args) as run:`."""
    saved = None
    if args.resume:
        run_dir, saved, args = resumed(args)  # the run's own settings
    threads = use_all_cores()
    keep_freed_memory()  # see lab/device.py: twice the speed in the first epoch on a CPU
    device, rank, world = distributed.setup(pick_device(args.device))  # torchrun: process `rank` of `world`
    if saved is None:
        precision, note = pick_precision(args.precision, device), None
    else:
        precision, note = precision_again(args.precision, saved["settings"][2].get("precision"), device)
    settings.model_options(args)  # a wrong option fails now, before the data is read
    if Path(args.checkpoint).is_dir():
        raise UserError(f"--checkpoint {args.checkpoint} is a folder: give a file name, e.g. net.pth")
    make_folder(Path(args.checkpoint).parent, "--checkpoint")  # now, not after the first epoch's training
    make_folder(args.logdir, "--logdir")
    if saved is None:
        run_dir = new_run_dir(args)
    elif saved["epoch"] >= args.epochs:
        raise UserError(
            f"run {run_dir} already finished all {args.epochs} epochs; its best model is in "
            f"{args.checkpoint} (to train longer, start a new run with more --epochs)"
        )
    lock = take_locks(args.checkpoint, run_dir) if rank == 0 else None  # rank 0 alone saves and logs
    print(
        f"Using {device} device"
        + (f" ({threads} threads)" if device.type == "cpu" else "")
        + f", {precision} precision"
        + (f", {world} processes (torchrun)" if distributed.launched() else "")
    )
    if saved is not None:
        best = saved["best"]
        print(
            f"Resuming {run_dir} after epoch {saved['epoch']} (best so far: epoch {best['epoch']}, "
            f"val {100 * best['val_acc']:.2f}%)"
        )
        if note:
            print(note)
    return Run(args, device, precision, rank, world, run_dir, saved, lock)


def resumed(args):
    """--resume: (the run's folder, what its last.pt held, its settings). Its own training and run settings;
    where it runs now (device, data) from this command. A training setting typed that differs is refused."""
    run_dir = find_run(args.logdir, args.resume)
    saved = read_state(run_dir / STATE_FILE)
    trained, kept, _ = saved["settings"]
    net = build_model(trained["model"], **settings.model_options(trained))
    if shapes(saved.get("model")) != shapes(net.state_dict()):  # before load_state_dict's traceback would say it
        raise UserError(f"{run_dir / STATE_FILE} holds weights that do not fit the net its settings build: start anew")
    if typed := settings.overruled(args, trained, kept):
        raise UserError(
            f"--resume continues {run_dir} with the settings it was started with: leave out "
            f"{', '.join(typed)}, or start a new run with them"
        )
    return run_dir, saved, argparse.Namespace(**{**vars(args), **trained, **kept})


def new_run_dir(args):
    args.run_name = args.run_name or default_run_name(args)
    run_dir = Path(args.logdir) / args.run_name
    if (run_dir / STATE_FILE).exists():
        raise UserError(
            f"run {run_dir} exists already: continue it with --resume {run_dir}, or pick another --run-name"
        )
    return run_dir


def take_locks(checkpoint, run_dir):
    """The lock on --checkpoint, taken only now: a run refused before leaves no lock behind. A read-only
    --logdir fails now too, not once the data is read."""
    lock = take_lock(checkpoint)
    try:
        make_folder(run_dir, "--logdir")
    except UserError:
        release_lock(lock)
        raise
    return lock


def precision_again(choice, trained_in, device):
    """A resumed run's precision, chosen again for the device it resumes on (it may have moved from a GPU to a
    CPU, or to another GPU): its --precision (auto, or what was typed), or auto's where that cannot run here.
    Returns (precision, a note when it is not the precision the run trained in, else None)."""
    try:
        precision = pick_precision(choice, device)
        why = f"--precision {choice} takes {precision} on this {device.type} device"
    except UserError:  # e.g. fp16, typed on a GPU, resumed on a CPU
        precision = pick_precision("auto", device)
        why = f"this {device.type} device cannot run --precision {choice}, so it takes auto's {precision}"
    if trained_in is None or precision == trained_in:
        return precision, None
    return precision, f"Note: the run trained in {trained_in} and goes on in {precision}: {why}"


def default_run_name(args):
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{args.model}_{args.optimizer}_lr{args.lr:g}_bs{args.batch_size}"


def find_run(logdir, resume):
    """The run folder that --resume names: a folder, a name under logdir, or the latest run."""
    if resume == "latest":
        states = sorted(Path(logdir).glob(f"**/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
        if not states:
            raise UserError(f"nothing to resume: no {STATE_FILE} under {logdir}/ (start with python train.py)")
        return states[-1].parent
    for run_dir in (Path(resume), Path(logdir) / resume):
        if (run_dir / STATE_FILE).is_file():
            return run_dir
    raise UserError(f"nothing to resume at {resume}: no {STATE_FILE} there or under {logdir}/{resume}")


# ---------------------------------------------------------------- last.pt: what is saved, and how it comes back


def read_state(path, hint="start a new run instead"):
    """What last.pt holds, checked, with its settings record read: ["settings"] = (training, run, resolved) dicts."""
    saved = load_file(path, what="resume state", hint=hint)
    if not isinstance(saved, dict) or "epoch" not in saved or saved.get("format", STATE_FORMAT) != STATE_FORMAT:
        raise UserError(f"{path} is not a run state of this lab's train.py: {hint}")
    check_version(saved, path, VERSION, "run state")
    saved["settings"] = settings.read_record(saved.get("settings", saved.get("args")), path)
    return saved


def shapes(weights):
    """{name: shape} of a state_dict; None for anything else."""
    if not isinstance(weights, dict):
        return None
    return {name: tuple(getattr(value, "shape", ())) for name, value in weights.items()}


# ---------------------------------------------------------------- the end of a run


@contextlib.contextmanager
def stoppable():
    """Ctrl-C (or, under torchrun, another process stopping first) ends the `with` block, not the run:
    what was saved stays saved, and stopped.interrupted says it happened."""
    stopped = argparse.Namespace(interrupted=False)
    try:
        yield stopped
    except KeyboardInterrupt:
        stopped.interrupted = True
    except RuntimeError as e:
        if not distributed.peer_stopped(e):
            raise
        stopped.interrupted = True
