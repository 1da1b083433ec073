"""Step 4 of reading a page: cutting touching digits apart.

A piece wider than a digit may hold several. It is tried cut at its thinnest places, each cut along the path
through the least ink that leans as the writing does (the "drop-fall" family), and of all the ways to cut it,
none included, the one kept is that whose parts the net reads most surely, each part weighed by how plausible
its width is for a digit (segmentation by recognition). A piece that stays whole though wider than any digit
gets a note. With the reader of touching digits (reading/reader.py, made by train_reader.py), which has seen
touching digits and the digit net has not, the reader says how many digits the piece holds and which; the
piece is cut into exactly that many, the way whose parts the net reads most surely as the reader's digits,
and those digits keep the reader's probabilities.

Each digit is a Digit (reading/pieces.py): its ink's mask within its box, in the ink map. cut_out() gives a
digit alone as the image preprocess() reads (reading/images.py), as the page's digits are read in the end.
"""

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from reading.images import ImageProblem, preprocess
from reading.pieces import Digit

# Each constant: what it measures, and where it was chosen (docs/predict.md, "The constants").
MAY_CUT = 0.75  # a piece wider than this share of its line's height, once upright, may be two digits: try cuts
ALONE = 1.3  # ... or this wide, on a page of one piece (most often a photo of one digit, as predict.py read)
READER_WIDTH = 0.5  # with the reader of touching digits, a piece this wide is shown to it (two touching 1s are)
NARROWEST = 0.15  # a digit's upright width as a share of its line's height: a 1 ...
WIDEST = 1.3  # ... to a wide 0 or 2
WIDTH_SPREAD = 0.3  # how fast a width outside that range becomes unlikely
CROSSING = 0.5  # what a cut costs, in log-probability, for each stroke it goes through (touching: about one)
TOUCH_NOTE = 1.4  # a part this wide once cut is said to be two or more digits, in a note (few single digits are)


# ---------------------------------------------------------------- where to cut


def least_ink_path(mask, column, reach, shear=0.0):
    """The path from top to bottom of `mask` (a piece's ink) that crosses the least ink, moving at most a pixel
    sideways per row and staying within `reach` of the line through `column` at mid-height that leans as the
    writing does (`shear` columns per row down): its column in each row."""
    h, w = mask.shape
    centre = np.clip(column + shear * (np.arange(h) - (h - 1) / 2), 0, w - 1)
    away = np.abs(np.arange(w)[None, :] - centre[:, None])
    cost = mask.astype(np.float64) + 0.01 * away / max(reach, 1)
    cost[away > reach] = np.inf
    total = cost[0].copy()
    step = np.zeros((h, w), np.int64)
    for r in range(1, h):  # rows in Python, columns in numpy: a few dozen rows per piece
        options = np.stack([np.r_[np.inf, total[:-1]], total, np.r_[total[1:], np.inf]])
        step[r] = options.argmin(0) - 1
        total = cost[r] + options.min(0)
    path = np.empty(h, np.int64)
    path[-1] = int(total.argmin())
    for r in range(h - 1, 0, -1):
        path[r - 1] = path[r] + step[r, path[r]]
    return path


def cut_columns(mask, height, shear, most):
    """Where a piece may be cut: up to `most` columns (at mid-height) where the ink, its lean taken off, is
    thinnest: the lowest local minima of its profile, 0.08 heights apart, left to right."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    upright = np.round(cols - shear * (rows - (h - 1) / 2)).astype(np.int64)  # each ink pixel's column at mid-height
    low = int(upright.min())
    profile = ndimage.uniform_filter1d(np.bincount(upright - low).astype(np.float64), max(1, int(0.06 * height)))
    end = max(2, int(0.05 * height))  # no cut within this of either end
    apart = 0.08 * height  # cuts at least this far apart: a 1 beside a digit is a tenth of a height wide
    minima = [
        c
        for c in range(end, len(profile) - end)
        if profile[c] <= profile[max(c - 1, 0)] and profile[c] <= profile[min(c + 1, len(profile) - 1)]
    ]
    chosen = []
    for c in sorted(minima, key=lambda c: profile[c]):
        if all(abs(c - d) >= apart for d in chosen):
            chosen.append(c)
        if len(chosen) == most:
            break
    return sorted(c + low for c in chosen)


def width_prior(ratio):
    """How likely a digit is to be `ratio` of its line's height wide, upright, as a log: 0 within the range of
    single digits' widths, falling quadratically outside it (two touching digits are wider than any one)."""
    outside = max(NARROWEST - ratio, ratio - WIDEST, 0.0)
    return -((outside / WIDTH_SPREAD) ** 2)


def stroke_width(mask):
    """The pen's width in a piece of ink: the median length of its runs of ink along the rows."""
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    starts, ends = np.nonzero(np.diff(padded, axis=1) == 1), np.nonzero(np.diff(padded, axis=1) == -1)
    runs = ends[1] - starts[1]
    return float(np.median(runs)) if len(runs) else 1.0


# ---------------------------------------------------------------- a digit's ink, cut out and read


def slant(parts):
    """How the writing leans: the median over its digits of the ink's shear (columns moved per row down, from
    its second moments, as MNIST's own deslanting measures it)."""
    shears = []
    for p in parts:
        rows, cols = np.nonzero(p.mask)
        if len(rows) > 2 and rows.var() > 0:
            shears.append(((rows - rows.mean()) * (cols - cols.mean())).mean() / rows.var())
    return float(np.median(shears)) if shears else 0.0


def margin(height):
    return int(0.15 * height) + 2


def cut_out(ink, part, height, owner=None, unit=0):
    """The digit `part` (a Digit) alone: the ink map within its box and a margin, every other digit's ink blanked (its
    own pixels only, or where given, those of `owner` that are `unit`'s), as the 8-bit white-on-black image
    that preprocess() reads."""
    left, top, right, bottom = part.box
    m = margin(height)
    row = max(0, top - m)  # the crop's first row and column in the ink map
    col = max(0, left - m)
    if owner is None:
        keep = np.zeros((bottom + m - row, right + m - col), bool)
        keep[top - row : bottom - row, left - col : right - col] = part.mask
        keep = keep[: ink.shape[0] - row, : ink.shape[1] - col]
    else:
        keep = owner[row : bottom + m, col : right + m] == unit
    region = ink[row : bottom + m, col : right + m] * keep
    return Image.fromarray((np.clip(region, 0, 1) * 255).round().astype(np.uint8), "L")


def readable(crop):
    """preprocess(crop), or a blank 28x28 where it finds no digit (a cut that left a side too faint)."""
    try:
        return preprocess(crop)
    except ImageProblem:
        return torch.zeros(28, 28)


class Cutter:
    """Cuts touching digits apart by recognition: of every way to cut a piece at its thinnest places, the one
    whose parts the net reads most surely, each part also weighed by how plausible its width is for a digit
    (the sum of log-probabilities: every extra part must earn its place). Cutting nothing is one of the ways.

    With the reader of touching digits (reading/reader.py), the reader says how many digits a piece holds and
    which: the piece is cut into exactly that many parts, the way whose parts the net reads most surely as
    the reader's digits, and each part keeps the reader's probabilities (it has seen touching digits)."""

    def __init__(self, ink, classify, shear, alone=False, reader=None):
        self.ink = ink
        self.classify = classify
        self.shear = shear
        self.reader = reader
        # A page of one piece is most often one digit (a photo of a digit, as predict.py always read):
        # it is tried only when wider than any single digit is.
        self.may_cut = ALONE if alone else MAY_CUT
        self.ask_reader = ALONE if alone else READER_WIDTH

    def read(self, parts, height):
        """The net's probabilities for each part, as it reads it cut out alone."""
        return self.classify(torch.stack([readable(cut_out(self.ink, p, height)) for p in parts]))

    def split(self, part, height):
        """The parts of `part` that are digits, left to right: [part] itself when no cut reads better."""
        width = part.upright_width(self.shear)
        if self.reader is None:
            return self.cut(part, height, width) if width > self.may_cut * height else [part]
        if width <= self.ask_reader * height:
            return [part]
        crop = np.asarray(cut_out(self.ink, part, height), np.float32) / 255
        text, probabilities = self.reader([crop])[0] if crop.any() else ("", [])
        if len(text) == 1 or not text and width <= self.may_cut * height:
            return [part]  # one digit, however wide: the net reads it, as any other
        parts = self.cut(part, height, width, text) if text else None
        if not parts:  # the reader sees no digit, or no cut gives its count: cut by the net alone
            return self.cut(part, height, width) if width > self.may_cut * height else [part]
        for p, probs in zip(parts, probabilities):
            p.probabilities = probs
            p.by_reader = True
        return parts

    def cut(self, part, height, width, text=None):
        """`part` cut where the net reads its parts most surely: into any number of parts, or, given `text`
        (what the reader read), into exactly len(text) parts, each weighed by the net's probability of the
        reader's digit for it. None when no way of cutting gives that many."""
        h, w = part.mask.shape
        most = min(20, max(int(np.ceil(4 * width / height)), 2 * len(text or "")))
        columns = cut_columns(part.mask, height, self.shear, most=most)
        cols = np.arange(w)[None, :]
        paths = [least_ink_path(part.mask, c, 0.15 * height, self.shear) for c in columns]
        # boundary k: what lies left of it; 0 is nothing, the last is everything
        lefts = [np.zeros((h, w), bool)] + [cols < path[:, None] for path in paths] + [np.ones((h, w), bool)]
        # what each cut costs: the strokes it goes through (the ink on its path, in pen widths)
        pen = stroke_width(part.mask)
        crossing = [0.0] + [CROSSING * part.mask[np.arange(h), np.clip(path, 0, w - 1)].sum() / pen for path in paths]
        last = len(lefts) - 1
        total = part.mask.sum()
        spans = {}  # (i, j): the ink between boundaries i and j, as a part, with its width's share of the height
        for i in range(last):
            for j in range(i + 1, last + 1):
                ink = part.mask & lefts[j] & ~lefts[i]
                if (i, j) != (0, last) and ink.sum() < 0.04 * total:
                    continue  # a crumb between two close cuts: no digit, it goes with a neighbour
                piece = Digit(part.box, ink).tight()
                ratio = piece.upright_width(self.shear) / height
                if ratio <= 1.6 or (i, j) == (0, last):
                    spans[(i, j)] = (piece, ratio)
        logp = dict(zip(spans, self.read([piece for piece, _ in spans.values()], height).clamp(min=1e-6).log()))

        def score(i, j, n):
            """Span (i, j) as the n-th digit: how surely the net reads it, how plausible its width is, and the
            cut on its left."""
            sure = logp[(i, j)].max() if text is None else logp[(i, j)][int(text[n])]
            return float(sure) + width_prior(spans[(i, j)][1]) - crossing[i]

        count = None if text is None else len(text)
        best = {(0, 0): (0.0, [])}  # (boundary, parts so far; always 0 without a count) -> (best score, its spans)
        for j in range(1, last + 1):
            for (i, n), (before, way) in [item for item in best.items() if item[0][0] < j]:
                if (i, j) not in spans or count is not None and n >= count:
                    continue
                key = (j, n + 1 if count is not None else 0)
                value = before + score(i, j, n)
                if key not in best or value > best[key][0]:
                    best[key] = (value, way + [(i, j)])
        found = best.get((last, count or 0))
        return [spans[k][0] for k in found[1]] if found else None


def touch_note(n, part, height, shear, scale):
    """The note for a part that seems to be several digits and was read as one."""
    left, top, right, bottom = (round(scale * v) for v in part.box)
    many = max(2, round(part.upright_width(shear) / (0.6 * height)))
    return f"line {n + 1}: {many} digits seem to touch at x {left}-{right}, y {top}-{bottom}: read as one"
