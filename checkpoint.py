"""Saving and loading checkpoints safely.

A checkpoint is a plain dict: the model's state_dict plus what is needed to
rebuild and trust it (model name and options, epoch, validation accuracy,
normalisation, training arguments, torch version). Never a pickled model:
it loads with torch.load(weights_only=True), which cannot run code.

Writes are atomic: we write a temporary file in the same folder and rename it
over the old one, so a crash or Ctrl-C mid-write leaves the previous file intact.
"""
import os
import pickle
import zipfile
from pathlib import Path

import torch

from common import UserError
from net import MODELS, build_model

FORMAT = "mnist-lab/checkpoint"
VERSION = 1


def atomic_save(obj, path):
    """torch.save to `path` so that it holds either the old file or the whole new one, never half.

    A failure to write (a full disk, a read-only folder) is a UserError: one line, and the old file stays.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path} ({e.strerror or e}); anything saved before is unchanged") from None
        raise


def make_checkpoint(model, model_name, model_options, **meta):
    """The dict we save as net.pth. `meta` holds epoch, val_acc, normalization, args, ..."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": model_name,
            "model_options": dict(model_options), "state_dict": state,
            "torch_version": str(torch.__version__), **meta}


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


def load_checkpoint(path):
    """Load net.pth and rebuild its model. Returns (model in eval mode on cpu, checkpoint dict)."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint of this lab (no '{FORMAT}' marker): "
                        "train one with python train.py")
    if ckpt.get("model") not in MODELS:
        raise UserError(f"{path} holds an unknown model {ckpt.get('model')!r}; "
                        f"this version knows {', '.join(MODELS)}")
    try:
        model = build_model(ckpt["model"], **ckpt.get("model_options", {}))
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError, KeyError) as e:
        raise UserError(f"{path} does not match the {ckpt['model']!r} network "
                        f"({str(e).splitlines()[0][:120]}); retrain with python train.py") from None
    return model.eval(), ckpt
