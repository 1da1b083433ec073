"""net.pth: the best model of a run, as data that rebuilds it.

A checkpoint is a plain dict: the model's state_dict plus what is needed to rebuild and trust it
(model name and options, epoch, validation and test accuracy, normalisation, the run's settings
record, the torch version). Never a pickled model: it loads with torch.load(weights_only=True),
which cannot run code. It is written atomically (lab/files.py): a crash, Ctrl-C or a full disk
while saving leaves the previous net.pth as it was.

While a run trains, it holds its net.pth with a lock file beside it (net.pth.lock, saying which
process): a second run given the same --checkpoint stops at once instead of overwriting the first's
best model with its own. A lock left by a run that was killed (kill -9, a crash) is taken over.
"""
import json
import os
import pickle
import socket
import sys
import time
import zipfile
from pathlib import Path

import torch

from lab.calibration import calibrate
from lab.cli import UserError
from lab.data import MEAN, STD
from lab.files import cannot_write, save_torch
from net import MODELS, build_model

FORMAT = "mnist-lab/checkpoint"
VERSION = 2  # 1: the settings were the whole argparse Namespace ("args"); 2: a settings record ("settings")


def make_checkpoint(model, model_name, model_options, settings, meta=None):
    """The dict saved as net.pth. `settings` is settings.record(); `meta`, a dict: epoch, val_acc, test_acc..."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": model_name, "model_options": dict(model_options),
            "state_dict": state, "normalization": {"mean": MEAN, "std": STD}, "settings": settings,
            "torch_version": str(torch.__version__), **(meta or {})}


def save_checkpoint(ckpt, path):
    save_torch(ckpt, path)


def load_file(path, what="checkpoint", hint="run python train.py first"):
    """torch.load with weights_only=True, every failure turned into a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no {what} at {path}: {hint}")
    if not zipfile.is_zipfile(path):  # every torch.save file since PyTorch 1.6 is a zip archive
        raise UserError(f"{path} is not a readable {what} (not a PyTorch file: corrupt, truncated "
                        f"or another format): {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, KeyError, AttributeError, TypeError, UnicodeDecodeError) as e:
        text = str(e).strip()
        if "Weights only load failed" in text:
            why = "it holds Python objects, not only weights, and is refused for safety"
        else:
            why = (text.splitlines()[0][:100] if text else type(e).__name__) + "; it may be corrupt or truncated"
        raise UserError(f"{path} is not a readable {what} ({why}): {hint}") from None


def check_version(obj, path, version, what):
    """Refuse, in one line, a file written by a newer version of the lab: it may mean what this code does not know."""
    found = obj.get("version", 1)
    if not isinstance(found, int) or found > version:
        raise UserError(f"{path} is a {what} of format version {found}, newer than this code reads "
                        f"(up to {version}): update the lab's code to use it")


def load_checkpoint(path):
    """Load net.pth and rebuild its model. Returns (model in eval mode on cpu, checkpoint dict)."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint of this lab (no '{FORMAT}' marker): "
                        "train one with python train.py")
    check_version(ckpt, path, VERSION, "checkpoint")
    if ckpt.get("model") not in MODELS:
        raise UserError(f"{path} holds an unknown model {ckpt.get('model')!r}; "
                        f"this version knows {', '.join(MODELS)}")
    try:
        model = build_model(ckpt["model"], **ckpt.get("model_options", {}))
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path} does not match the {ckpt['model']!r} network "
                        f"({str(e).splitlines()[0][:120]}); retrain with python train.py") from None
    # Read at the temperature fitted on validation (lab/calibration.py); an older checkpoint has none: 1, as before.
    calibrate(model, float(ckpt.get("temperature", 1.0)))
    return model.eval(), ckpt


# ---------------------------------------------------------------- one run at a time on a net.pth

def lock_file(path):
    return Path(f"{path}.lock")


def take_lock(path):
    """Claim the checkpoint `path` for this process until release_lock(): its lock file, made only
    if none is there (open mode "x"), holds our pid and host. Returns the lock file's path.

    Another live run's lock is a one-line UserError; a lock whose process has ended is taken over.
    """
    lock = lock_file(path)
    for attempt in (1, 2):
        try:
            f = open(lock, "x", encoding="utf-8")  # atomic: of two runs starting together, one gets it
        except FileExistsError:
            holder = read_lock(lock)
            if attempt == 2 or not has_ended(holder):
                raise UserError(in_use(path, lock, holder)) from None
            print(f"(taking over {lock}: it was left by process {holder['pid']}, which has ended)")
            # Two runs taking over the same dead lock at the same instant could both get it: rare enough.
            lock.unlink(missing_ok=True)
            continue
        except OSError as e:  # a read-only folder, a full disk
            raise cannot_write(lock, e) from None
        try:
            with f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}, f)
        except BaseException as e:  # a full disk, Ctrl-C: leave no lock that names nobody
            lock.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise cannot_write(lock, e) from None
            raise
        return lock


def release_lock(lock):
    """Remove the lock, if it is still this process's (a user may have deleted it and another run taken it)."""
    holder = read_lock(lock)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        try:
            lock.unlink(missing_ok=True)
        except OSError:  # e.g. the folder became read-only: the next run finds our pid ended and takes it
            pass


def refuse_if_locked(path):
    """A UserError if a live run holds `path` (sweep.py asks before it clears or resumes a run's folder)."""
    lock = lock_file(path)
    if lock.exists():
        holder = read_lock(lock)
        if not has_ended(holder):
            raise UserError(in_use(path, lock, holder))


def read_lock(lock):
    """What a lock file says ({} when it is gone, empty or unreadable)."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def has_ended(holder):
    """Whether the process a lock names has surely ended: it ran on this machine and its pid is gone.
    (A lock that names another machine, or nobody, is left alone: we cannot tell.)"""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True  # this process, from a run that is over (its runs never overlap)
    if os.name != "posix":
        return False  # os.kill(pid, 0) would send Ctrl-C on Windows rather than ask
    try:
        os.kill(pid, 0)  # signal 0: sends nothing, only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    return False


def in_use(path, lock, holder):
    """The one line saying who holds `path` and what to do."""
    other = Path(path).with_name(f"{Path(path).stem}-2{Path(path).suffix}")
    here = holder.get("host") == socket.gethostname()
    if not isinstance(holder.get("pid"), int):
        who = f"a run whose lock file {lock} names no process"
    else:
        who = (f"another training run (process {holder['pid']}{'' if here else ' on ' + str(holder.get('host'))}, "
               f"since {holder.get('since', '?')}; lock file {lock})")
    # has_ended() cannot ask another machine, nor Windows, nor see a pid reused after a reboot: the user can.
    return (f"{path} is in use by {who}: let it finish, or give this run its own file, e.g. --checkpoint {other}; "
            f"if that run has ended, delete {lock}")
