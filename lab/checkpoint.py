"""net.pth: the best model of a run, as data that rebuilds it.

A checkpoint is a plain dict: the model's state_dict plus what is needed to rebuild and trust it
(model name and options, epoch, validation and test accuracy, normalisation, the run's settings
record, the torch version). Never a pickled model: it loads with torch.load(weights_only=True),
which cannot run code. It is written atomically (lab/files.py): a crash, Ctrl-C or a full disk
while saving leaves the previous net.pth as it was.

While a run trains, it holds its net.pth with the operating system's lock on a file beside it
(net.pth.lock, saying which process): a second run given the same --checkpoint stops at once instead
of overwriting the first's best model with its own. The system frees the lock when the run ends,
however it ends (kill -9, a crash): the next run takes it.
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
from filelock import FileLock, Timeout

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
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "model_options": dict(model_options),
        "state_dict": state,
        "normalization": {"mean": MEAN, "std": STD},
        "settings": settings,
        "torch_version": str(torch.__version__),
        **(meta or {}),
    }


def save_checkpoint(ckpt, path):
    save_torch(ckpt, path)


def load_file(path, what="checkpoint", hint="run python train.py first"):
    """torch.load with weights_only=True, every failure turned into a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no {what} at {path}: {hint}")
    if not zipfile.is_zipfile(path):  # every torch.save file since PyTorch 1.6 is a zip archive
        raise UserError(
            f"{path} is not a readable {what} (not a PyTorch file: corrupt, truncated or another format): {hint}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        AttributeError,
        TypeError,
        UnicodeDecodeError,
    ) as e:
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
        raise UserError(
            f"{path} is a {what} of format version {found}, newer than this code reads "
            f"(up to {version}): update the lab's code to use it"
        )


def load_checkpoint(path):
    """Load net.pth and rebuild its model. Returns (model in eval mode on cpu, checkpoint dict)."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a checkpoint of this lab (no '{FORMAT}' marker): train one with python train.py"
        )
    check_version(ckpt, path, VERSION, "checkpoint")
    if ckpt.get("model") not in MODELS:
        raise UserError(f"{path} holds an unknown model {ckpt.get('model')!r}; this version knows {', '.join(MODELS)}")
    try:
        model = build_model(ckpt["model"], **ckpt.get("model_options", {}))
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError, KeyError, ValueError) as e:
        raise UserError(
            f"{path} does not match the {ckpt['model']!r} network "
            f"({str(e).splitlines()[0][:120]}); retrain with python train.py"
        ) from None
    # Read at the temperature fitted on validation (lab/calibration.py); an older checkpoint has none: 1, as before.
    calibrate(model, float(ckpt.get("temperature", 1.0)))
    return model.eval(), ckpt


# ---------------------------------------------------------------- one run at a time on a net.pth


def lock_file(path):
    return Path(f"{path}.lock")


def take_lock(path):
    """Hold the checkpoint `path` for this process until release_lock(). Returns the lock.

    The lock is the operating system's, on the file net.pth.lock, taken through filelock (torch itself
    depends on it): the system frees it when the process ends, however it ends, kill -9 included, so no
    lock is ever stale. A second run given the same --checkpoint gets a one-line UserError at once.
    The file also says which process holds it, for that line (on POSIX: Windows locks the file's first
    byte against every handle, so there it stays empty and the line names no process).
    """
    file = lock_file(path)
    lock = FileLock(file, timeout=0)  # one attempt: a second run stops at once, it does not wait
    try:
        lock.acquire()
    except Timeout:
        raise UserError(in_use(path, file, read_lock(file))) from None
    except OSError as e:  # a read-only folder, a full disk
        raise cannot_write(file, e) from None
    left = read_lock(file)
    if "pid" in left:  # kill -9 leaves the file, but not the lock
        print(f"(taking over {file}: it was left by process {left['pid']}, which has ended)")
    if os.name != "posix":
        return lock
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": sys.argv,
    }
    try:
        file.write_text(json.dumps(holder), encoding="utf-8")
    except BaseException as e:  # a full disk, Ctrl-C: give the lock back, and leave no file behind
        release_lock(lock)
        if isinstance(e, OSError):
            raise cannot_write(file, e) from None
        raise
    return lock


def release_lock(lock):
    """Give the lock back, and remove its file, so that nothing is left beside net.pth. The file goes first,
    while the lock is still ours: once it is released, another run may already hold the same file."""
    try:
        Path(lock.lock_file).unlink(missing_ok=True)
    except OSError:  # a folder made read-only meanwhile; on Windows, an open file (filelock removes it there)
        pass
    lock.release()


def refuse_if_locked(path):
    """A UserError if a live run holds `path` (sweep.py asks before it clears or resumes a run's folder)."""
    if lock_file(path).exists():  # a run holds its lock file until it ends: with none there, none holds `path`
        release_lock(take_lock(path))


def read_lock(file):
    """Who a lock file says holds it ({} when it is gone, empty or unreadable)."""
    try:
        holder = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def in_use(path, lock, holder):
    """The one line saying who holds `path` and what to do."""
    other = Path(path).with_name(f"{Path(path).stem}-2{Path(path).suffix}")
    who = "another training run"
    if isinstance(holder.get("pid"), int):
        here = holder.get("host") == socket.gethostname()
        who += f" (process {holder['pid']}{'' if here else ' on ' + str(holder.get('host'))}, "
        who += f"since {holder.get('since', '?')}; lock file {lock})"
    else:
        who += f" (lock file {lock})"
    return f"{path} is in use by {who}: let it finish, or give this run its own file, e.g. --checkpoint {other}"
