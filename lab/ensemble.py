"""Several checkpoints read as one net: the mean of their probabilities.

    python test.py --checkpoint a.pth b.pth c.pth       # the ensemble's accuracy beside each member's
    python predict.py photo.jpg --checkpoint a.pth b.pth
    python sweep.py --recipe best --seed 1 2 3 4 5      # five members, from five seeds

Nets trained from different seeds start from different random weights and see the images in a
different order, so they end up making different mistakes; where one is unsure, the others often
are not. Averaging the probabilities they give each digit (not their logits: a net's logits have a
scale of their own) corrects some of those mistakes: five nets of the best recipe together make 30 mistakes on MNIST's
test set where their median member makes 33 (docs/results.md): nets trained alike mostly err alike.

The ensemble is an nn.Module like any net: its output is the log of the mean probability, so that
a softmax of it gives the mean probability itself, and test.py, predict.py, draw.py and the
explanations (inside/explain.py) use it as they use one net.

test.py --tta reads each image five times, as it is and moved by one pixel up, down, left and right
(test-time augmentation: Shifted), and averages the same way; its figures are reported apart from
the nets' own, since it costs five passes per image.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lab.checkpoint import load_checkpoint
from lab.cli import UserError
from lab.metrics import result_of
from net import count_parameters


class Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        log_p = torch.stack([m(x).float().log_softmax(1) for m in self.members])  # [members, N, 10]
        return torch.logsumexp(log_p, 0) - math.log(len(self.members))  # log of the mean probability


def mean_result(results, labels):
    """The ensemble's evaluate() result from its members' results on the same images (the mean of their
    probabilities, as Ensemble reads): test.py reads each member once, not once alone and again together."""
    probabilities = torch.stack([r["probabilities"] for r in results]).mean(0)
    loss = float(F.nll_loss(probabilities.clamp_min(1e-30).log(), labels.cpu()))
    return result_of(probabilities, labels, loss)


class Shifted(nn.Module):
    """A net (or an ensemble) reading each image as it is and moved by one pixel each way: the mean of
    the five readings' probabilities. `background` is a blank pixel, normalised: what moves in at the edge."""

    SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))

    def __init__(self, model, background):
        super().__init__()
        self.model = model
        self.background = background

    def forward(self, x):
        padded = torch.nn.functional.pad(x - self.background, (1, 1, 1, 1)) + self.background
        h, w = x.shape[-2:]
        log_p = torch.stack(
            [
                self.model(padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]).float().log_softmax(1)
                for dy, dx in self.SHIFTS
            ]
        )
        return torch.logsumexp(log_p, 0) - math.log(len(self.SHIFTS))


def load(paths):
    """The net of one checkpoint, or the Ensemble of several: (model in eval mode on the CPU, checkpoint dict).

    For one path, exactly what load_checkpoint gives. For several, the dict describes the ensemble:
    "model" names it, "members" holds each member's own dict (its weights left out) with its "path",
    and "normalization" is the members' common one. A member that does not load, or that was trained
    on inputs normalised otherwise than the first, is a one-line error naming it.
    """
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if len(paths) == 1:
        return load_checkpoint(paths[0])
    twice = next((p for i, p in enumerate(paths) if Path(p).resolve() in {Path(q).resolve() for q in paths[:i]}), None)
    if twice is not None:
        raise UserError(f"{twice} is given twice: each member of an ensemble once")
    models = []
    members = []
    for path in paths:
        model, ckpt = load_checkpoint(path)
        norm = ckpt.get("normalization")
        if members and norm != members[0].get("normalization"):
            raise UserError(
                f"{path} was trained on other inputs (normalised with {norm}) than {paths[0]} "
                f"({members[0].get('normalization')}): an ensemble's nets must read the same images; "
                f"leave it out or retrain it"
            )
        models.append(model)
        members.append(
            {
                **{k: v for k, v in ckpt.items() if k != "state_dict"},
                "path": path,
                "parameters": count_parameters(model),
            }
        )
    names = sorted({m["model"] for m in members})
    return Ensemble(models).eval(), {
        "format": members[0]["format"],
        "model": f"ensemble of {len(members)} ({', '.join(names)})",
        "members": members,
        "normalization": members[0].get("normalization"),
        "epoch": None,
        "val_acc": None,
    }


def members(model):
    """The nets an ensemble is made of; [model] for one net."""
    return list(model.members) if isinstance(model, Ensemble) else [model]
