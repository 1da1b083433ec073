"""The reader of touching digits: a small net that reads a piece of ink holding one or several digits
whose strokes touch, and says how many there are and which.

Why a second net: the digit net (net.py) has only ever seen one digit, centred. Shown two touching
digits squeezed into 28x28 it reads them as one digit, as surely as it reads either half, so cutting by
its confidence alone (reading/cutting.py's Cutter) cuts a touching number into too few digits. This reader has
seen touching digits. It is a CRNN (Shi, Bai and Yao, 2015): convolutions read the piece's columns,
a bidirectional GRU reads them left to right, and each column says "digit d here" or "nothing new"
(the blank); CTC (torch.nn.functional.ctc_loss) trains it on the digits in order, without telling it
where each one is. reading/pages.py then cuts the piece into exactly as many digits as it reads.

It learns from pieces made from MNIST's training digits (the 55,000 that train.py trains on) by
reading/sheets.make_piece: two to five digits pressed together until their ink touches or crosses, written
as a sheet's line is, now and then one digit alone, with the slant, size and pen of a written page. The 5,000
validation digits make the pieces that choose the best step; MNIST's test digits make those it is
measured on, and the sheets of bench.py --pages.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from lab.checkpoint import check_version, load_file
from lab.cli import UserError
from lab.files import save_torch
from reading.sheets import edit_distance

FORMAT, VERSION = "mnist-lab/reader", 1
HEIGHT = 28  # a piece is read at this height, its ink 24 pixels tall as an MNIST digit's 20 in 28, or so
HINT = "train one with python train_reader.py"


class Reader(nn.Module):
    """Four conv blocks (the height pooled away: 28 -> 1, the width to a quarter), a bidirectional GRU over
    the columns, and 11 outputs per column: the blank, then digits 0-9."""

    def __init__(self, channels=(24, 48, 64, 64), hidden=80):
        super().__init__()

        def block(cin, cout, pool):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool)]

        c = channels
        self.conv = nn.Sequential(
            *block(1, c[0], 2), *block(c[0], c[1], 2), *block(c[1], c[2], (2, 1)), *block(c[2], c[3], (3, 1))
        )
        self.rnn = nn.GRU(c[3], hidden, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * hidden, 11)

    def forward(self, x):  # [B, 1, 28, W]
        f = self.conv(x).flatten(1, 2)  # [B, C, W/4]: the height is pooled to 1
        return self.out(self.rnn(f.transpose(1, 2))[0])  # [B, W/4, 11]


# ---------------------------------------------------------------- a piece as the reader reads it


def reader_input(ink):
    """A piece's ink (float [h, w], 0 where there is none) as the reader reads it: cropped to the ink, scaled
    to 24 pixels tall (its width in proportion) and framed by 2 pixels above and below, 4 at the sides."""
    rows, cols = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(1, round(ink.shape[1] * (HEIGHT - 4) / ink.shape[0]))
    small = Image.fromarray((np.clip(ink, 0, 1) * 255).astype(np.uint8)).resize(
        (width, HEIGHT - 4), Image.Resampling.BILINEAR
    )
    out = np.zeros((HEIGHT, width + 8), np.float32)
    out[2 : HEIGHT - 2, 4 : 4 + width] = np.asarray(small, np.float32) / 255
    return out


def batch(inputs):
    """Reader inputs of varied widths as one batch: padded on the right with blank, and each one's column count."""
    width = -(-max(a.shape[1] for a in inputs) // 4) * 4
    x = torch.zeros(len(inputs), 1, HEIGHT, width)
    for i, a in enumerate(inputs):
        x[i, 0, :, : a.shape[1]] = torch.from_numpy(a)
    return x, torch.tensor([a.shape[1] // 4 for a in inputs])


def decode(probs, columns):
    """Best-path CTC decoding of one piece: the digits read, and for each its 10 probabilities (at the column
    where it is surest, the blank left out). probs: [T, 11]."""
    best = probs[:columns].argmax(1).tolist()
    text, each, t = "", [], 0
    while t < len(best):
        u = t + 1
        while u < len(best) and best[u] == best[t]:
            u += 1
        if best[t]:  # a run of one digit's columns: one digit
            peak = t + int(probs[t:u, best[t]].argmax())
            each.append(probs[peak, 1:] / probs[peak, 1:].sum())
            text += str(best[t] - 1)
        t = u
    return text, each


def read_pieces(model, inks):
    """What the reader reads in each piece of ink: [(digits, [10 probabilities per digit])]."""
    return read_inputs(model, [reader_input(a) for a in inks])


def read_inputs(model, inputs):
    if not inputs:
        return []
    x, columns = batch(inputs)
    with torch.inference_mode():
        probs = model(x).float().softmax(-1)
    return [decode(p, n) for p, n in zip(probs, columns.tolist())]


# ---------------------------------------------------------------- training, saving, loading


def measure(model, pieces, batch_size=200):
    """(pieces read exactly, digits right as an OCR counts them) of [(reader input, digits)], as shares."""
    model.eval()
    exact = right = total = 0
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][0].shape[1])
    for i in range(0, len(order), batch_size):
        chunk = [pieces[k] for k in order[i : i + batch_size]]
        for (text, _), (_, truth) in zip(read_inputs(model, [a for a, _ in chunk]), chunk):
            exact += text == truth
            right += max(0, len(truth) - edit_distance(text, truth))
            total += len(truth)
    model.train()
    return exact / len(pieces), right / total


DEFAULT = "reader.pth"


def add_reader_flag(parser):
    parser.add_argument(
        "--reader",
        metavar="FILE",
        default=None,
        help="the reader of touching digits that train_reader.py saved, for digits that touch on a "
        f"page: 'none' reads without (default: {DEFAULT}, if it is there)",
    )


def reader_from_flag(value):
    """What --reader names, as reading/pages.py reads with it: a function from pieces of ink (float [h, w] each)
    to what read_pieces() gives. None for 'none', or for the default when train_reader.py has not made it."""
    if value == "none" or value is None and not Path(DEFAULT).is_file():
        return None
    model = load_reader(value or DEFAULT)[0]
    return lambda inks: read_pieces(model, inks)


def save_reader(model, path, **meta):
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_torch(
        {"format": FORMAT, "version": VERSION, "state_dict": state, "torch_version": str(torch.__version__), **meta},
        path,
    )


def load_reader(path):
    """The reader saved by train_reader.py, in eval mode on the CPU; every problem one line (UserError)."""
    saved = load_file(path, "reader", HINT)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UserError(f"{path} is not a reader of touching digits (no '{FORMAT}' marker): {HINT}")
    check_version(saved, path, VERSION, "reader")
    model = Reader()
    try:
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"{path} does not fit the reader of this lab ({str(e).splitlines()[0][:80]}): {HINT}") from None
    return model.eval(), saved
