"""net.pth: the best model of a run, as data that rebuilds it.

A checkpoint is a plain dict: the model's state_dict plus what is needed to rebuild and trust it
(model name and options, epoch, validation and test accuracy, normalisation, the run's settings
record, the torch version). Never a pickled model: it loads with torch.load(weights_only=True),
which cannot run code. It is written atomically (lab/files.py): a crash, Ctrl-C or a full disk
while saving leaves the previous net.pth as it was.
"""
import pickle
import zipfile
from pathlib import Path

import torch

from lab.cli import UserError
from lab.data import MEAN, STD
from lab.files import save_torch
from net import MODELS, build_model

FORMAT = "mnist-lab/checkpoint"
VERSION = 2  # 1: the settings were the whole argparse Namespace ("args"); 2: a settings record ("settings")


def make_checkpoint(model, model_name, model_options, settings, **meta):
    """The dict saved as net.pth. `settings` is settings.record(); `meta` holds epoch, val_acc, test_acc..."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model": model_name, "model_options": dict(model_options),
            "state_dict": state, "normalization": {"mean": MEAN, "std": STD}, "settings": settings,
            "torch_version": str(torch.__version__), **meta}


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
    return model.eval(), ckpt
