"""Every digit on a page, in reading order: a written number, a sheet of digits, a photo of either.

read_page(img, classify) finds the digits, cuts each one out on its own and gives it to
preprocess() (reading/images.py), the one way a digit becomes 28x28; `classify` is the net. The steps:

1. The ink: the paper is what surrounds the writing (as in preprocess), and the paper's own light,
   shadows and the table beyond its edge included, is a grey opening of the page larger than any
   stroke; what stands out from it by Otsu's threshold is ink.
2. Its connected pieces; those that belong together become one digit (boxes that overlap
   horizontally: a 5's flag, a 4 or a 7 in two strokes); specks far smaller than the digits, and
   the paper's edge, are dropped.
3. Lines: each digit joins the line whose last digit (to its left) is nearest in height, so that a
   sloping line stays one line; lines run top to bottom, digits left to right.
4. Touching digits: a piece wider than a digit may hold several. It is tried cut at its thinnest
   places, each cut along the path through the least ink that leans as the writing does (the
   "drop-fall" family), and of all the ways to cut it, none included, the one kept is that whose parts
   the net reads most surely, each part weighed by how plausible its width is for a digit
   (segmentation by recognition). A piece that stays whole though wider than any digit gets a note.
   With the reader of touching digits (reading/reader.py, made by train_reader.py), which has seen
   touching digits and the digit net has not, the reader says how many digits the piece holds and
   which; the piece is cut into exactly that many, the way whose parts the net reads most surely as
   the reader's digits, and those digits keep the reader's probabilities.

A page that holds one digit goes to preprocess() whole, exactly as predict.py has always read a file.

scipy.ndimage does the image work (connected components and their boxes, grey morphology, distance
maps): the field's well-kept library for it, in C, already beside numpy; OpenCV would do the same
at ten times the download, and hand-written labelling would be slow Python or subtle code to check.
"""
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from reading.images import MIN_CONTRAST, ImageProblem, net_input, otsu, preprocess, to_grey

PAPER = 0.25       # the grey opening's size, as a share of the page's shorter side: wider than any stroke
SPECK = 0.35       # a piece lower and narrower than this share of the digits' height is dirt, not a digit
JOIN = 0.5         # pieces whose boxes overlap horizontally by this share of the narrower join
JOIN_STACKED = 0.05  # ... or at all, when one is above the other (a 5's flag, a 7's bar)
STACKED_DIGIT = 0.6  # ... unless both are this share of a digit's height or taller: one digit above another
MAX_PIECES = 400   # the largest pieces kept: a page of digits has far fewer
FAINT = 0.5        # a piece whose ink is fainter than this share of the page's usual ink is a shadow's edge
MAY_CUT = 0.75     # a piece wider than this share of its line's height, once upright, may be two digits: try cuts
ALONE = 1.3        # ... or this wide, on a page of one piece (most often a photo of one digit, as predict.py read)
READER_WIDTH = 0.5   # with the reader of touching digits, a piece this wide is shown to it (two touching 1s are)
NARROWEST, WIDEST = 0.15, 1.3  # a digit's upright width as a share of its line's height: a 1 to a wide 0 or 2
WIDTH_SPREAD = 0.3   # how fast a width outside that range becomes unlikely
CROSSING = 0.5       # what a cut costs, in log-probability, for each stroke it goes through (touching: about one)
TOUCH_NOTE = 1.4   # a part this wide once cut is said to be two or more digits, in a note (few single digits are)


@dataclass
class Digit:
    box: tuple          # (left, top, right, bottom) in the image's own pixels
    line: int           # 0: the top line
    crop: Image.Image   # what preprocess() read: this digit alone, white on black (the image itself for one digit)
    pixels: torch.Tensor = None          # the 28x28 image it became
    probabilities: torch.Tensor = None   # the net's 10 probabilities (or the reader's)
    by_reader: bool = False              # read by the reader of touching digits, not the net

    @property
    def digit(self):
        return int(self.probabilities.argmax())


@dataclass
class Page:
    digits: list                                # in reading order
    notes: list = field(default_factory=list)   # one line each: what could not be done ("2 digits touch at ...")

    @property
    def lines(self):
        """The number read on each line, top to bottom: ["00568", "2501"]."""
        out = [""] * (1 + max((d.line for d in self.digits), default=-1))
        for d in self.digits:
            out[d.line] += str(d.digit)
        return out


# ---------------------------------------------------------------- 1. the ink

def ink_map(img):
    """The page as ink over blank paper: float [H, W], 0 on the paper, towards 1 on the darkest ink, at
    reading/images.py's working size; and the scale back to the image's own pixels."""
    x = to_grey(img).numpy()
    h, w = x.shape
    if h < 2 or w < 2:
        raise ImageProblem("image too small")
    if dark_ink(x):  # ink becomes bright on black, as in MNIST
        x = 1 - x
    k = max(3, round(PAPER * min(h, w)))
    paper = ndimage.grey_opening(x, size=(k, k))  # the ink is thinner than k: what is left is the paper
    # Divided by the paper's own brightness: a shadow dims paper and ink alike, the ratio stays
    ink = (x - paper) / np.maximum(1 - paper, 0.2)
    return np.clip(ink, 0, 1), img.width / w


def dark_ink(x):
    """Whether the ink is darker than the paper. Within each ninth of the page, far wider than a stroke,
    the paper is most of what is there, and the ink a tail of pixels far darker (or lighter) than that
    ninth's median: the longer tail is the ink, when it is much longer. When not (a bold digit fills a
    ninth), the majority of three signs decides, each fooled by something the others are not:
    - that one;
    - the border is paper (as preprocess() asks of one digit; on a page it may be the table's edge or a
      shadow);
    - the same tails about the whole page's median (a deep shadow over half the page spreads the paper
      as far as the ink)."""
    h, w = x.shape
    band = max(1, round(0.03 * min(h, w)))
    border = np.concatenate([x[:band].ravel(), x[-band:].ravel(), x[:, :band].ravel(), x[:, -band:].ravel()])
    low, middle, high = np.quantile(x, [0.01, 0.5, 0.99])
    rows, cols = np.linspace(0, h, 4).astype(int), np.linspace(0, w, 4).astype(int)
    residual = np.concatenate([(x[r0:r1, c0:c1] - np.median(x[r0:r1, c0:c1])).ravel()
                               for r0, r1 in zip(rows, rows[1:]) for c0, c1 in zip(cols, cols[1:])])
    near_low, near_high = np.quantile(residual, [0.01, 0.99])
    if not 0.5 * near_high <= -near_low <= 2 * near_high:  # a clear answer
        return -near_low > near_high
    votes = [np.median(border) > otsu(torch.from_numpy(x)), middle - low > high - middle, -near_low > near_high]
    return sum(map(bool, votes)) >= 2


def ink_mask(ink):
    """Where the ink is: Otsu's threshold on the ink map, none if nothing stands out enough."""
    t = otsu(torch.from_numpy(ink))
    return ink > max(t, MIN_CONTRAST)


# ---------------------------------------------------------------- 2. pieces into digits

def pieces(mask, ink=None):
    """Connected pieces of ink (8-neighbours): labels [H, W] and a list of [label set, box (top, left, bottom,
    right), pixel count]. Given the ink map, pieces far fainter than the others are left out: the edge of a
    shadow, or of the paper, a smudge (ink is about as dark everywhere on a page)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    # a piece's strength: its darkest ink, smoothed over 3x3 pixels so that no single noisy pixel counts
    strength = (ndimage.maximum(ndimage.uniform_filter(ink, 3), labels, np.arange(1, n + 1))
                if ink is not None and n else np.ones(n))
    usual = np.median(np.repeat(strength, counts[1:])) if n else 1.0  # over the ink's pixels: big pieces weigh more
    found = []
    for i, s in enumerate(ndimage.find_objects(labels), start=1):
        if strength[i - 1] >= FAINT * usual:
            found.append([{i}, [s[0].start, s[1].start, s[0].stop, s[1].stop], int(counts[i])])
    return labels, found


def digit_height(found):
    """The height of a digit on this page: the median height of the pieces at least half as tall as the
    tallest (a digit's broken strokes, a 5's flag, are shorter than the digits)."""
    tallest = max(p[1][2] - p[1][0] for p in found)
    return float(np.median([p[1][2] - p[1][0] for p in found if p[1][2] - p[1][0] >= 0.5 * tallest]))


def join_pieces(found, height):
    """Join pieces whose boxes overlap horizontally by JOIN of the narrower (JOIN_STACKED when one is above
    the other, their boxes overlapping by at most half the shorter's height), unless that would make one
    taller than a digit: 1.45 digit heights, or, for pieces that meet, 1.7 times the taller (a digit broken
    in two on a page of that digit alone). Two pieces one above the other with paper between, both at
    least STACKED_DIGIT tall, are never joined: they are two lines' digits."""
    joined = True
    while joined:
        joined = False
        for a in range(len(found)):
            for b in range(a + 1, len(found)):
                (_, p, _), (_, q, _) = found[a], found[b]
                overlap = min(p[3], q[3]) - max(p[1], q[1])
                union = [min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])]
                stacked = min(p[2], q[2]) - max(p[0], q[0]) <= 0.5 * min(p[2] - p[0], q[2] - q[0])
                share = JOIN_STACKED if stacked else JOIN
                # one above the other with paper between: a digit's flag or bar floating over it, or two lines'
                # digits, which each are as tall as most of a digit and together taller than one
                apart = stacked and max(p[0], q[0]) - min(p[2], q[2]) >= 0.1 * height
                two_digits = apart and min(p[2] - p[0], q[2] - q[0]) >= STACKED_DIGIT * height
                tall = 1.45 * height if apart else max(1.45 * height, 1.7 * max(p[2] - p[0], q[2] - q[0]))
                if overlap >= share * min(p[3] - p[1], q[3] - q[1]) and union[2] - union[0] <= tall and not two_digits:
                    found[a] = [found[a][0] | found[b][0], union, found[a][2] + found[b][2]]
                    del found[b]
                    joined = True
                    break
            if joined:
                break
    return found


def not_edges(found, shape):
    """The pieces less the paper's edge: ink along a side of the photo, nearly all of its length or a strip
    along it three times longer than thick: the table beyond the paper, or its shade."""
    h, w = shape

    def edge(p):
        top, left, bottom, right = p[1]
        tall, wide = bottom - top, right - left
        along_side = (left == 0 or right == w) and tall >= 3 * wide  # a strip down the left or right side
        along_top = (top == 0 or bottom == h) and wide >= 3 * tall   # ... or along the top or the bottom
        touches = top == 0 or left == 0 or bottom == h or right == w
        return along_side or along_top or touches and (tall >= 0.9 * h or wide >= 0.9 * w)
    return [p for p in found if not edge(p)]


def not_specks(found, height):
    """The pieces that can be digits: not specks far smaller than a digit, nor what has a tenth of the
    largest digit's ink or less: hair-thin lines (the shade along the paper's edge), dots (a 1 written
    small and thin still has a fifth of a bold 8's)."""
    most = max(p[2] for p in found)
    small = lambda p: p[1][2] - p[1][0] < SPECK * height and p[1][3] - p[1][1] < SPECK * height
    return [p for p in found if not small(p) and p[2] >= 0.1 * most]


# ---------------------------------------------------------------- 3. lines

def into_lines(found, height):
    """Group digits into lines by chaining neighbours (a sloping line stays one), then order lines top to
    bottom and digits left to right. Returns a list of lines, each a list of pieces."""
    lines = []
    for p in sorted(found, key=lambda p: p[1][1]):
        cy = (p[1][0] + p[1][2]) / 2
        near = [(abs(cy - (line[-1][1][0] + line[-1][1][2]) / 2), i) for i, line in enumerate(lines)
                if p[1][1] - line[-1][1][3] < 4 * height]
        near = [n for n in near if n[0] < 0.6 * height]
        if near:
            lines[min(near)[1]].append(p)
        else:
            lines.append([p])
    return sorted(lines, key=lambda line: np.mean([(p[1][0] + p[1][2]) / 2 for p in line]))


# ---------------------------------------------------------------- 4. touching digits

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
    end, apart = max(2, int(0.05 * height)), 0.08 * height  # a 1 beside a digit is a tenth of a height wide
    minima = [c for c in range(end, len(profile) - end)
              if profile[c] <= profile[max(c - 1, 0)] and profile[c] <= profile[min(c + 1, len(profile) - 1)]]
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
    return -(outside / WIDTH_SPREAD) ** 2


def stroke_width(mask):
    """The pen's width in a piece of ink: the median length of its runs of ink along the rows."""
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    starts, ends = np.nonzero(np.diff(padded, axis=1) == 1), np.nonzero(np.diff(padded, axis=1) == -1)
    runs = ends[1] - starts[1]
    return float(np.median(runs)) if len(runs) else 1.0


# ---------------------------------------------------------------- a digit's ink, cut out and read

@dataclass
class Part:
    """One digit's ink on the page: the mask of its pixels within its box, and where that box is."""
    top: int
    left: int
    mask: np.ndarray
    probabilities: torch.Tensor = None  # what the reader of touching digits read in it, if it read it

    @property
    def box(self):
        """(top, left, bottom, right) in the ink map's pixels."""
        return self.top, self.left, self.top + self.mask.shape[0], self.left + self.mask.shape[1]

    def tight(self):
        """The same ink in the smallest box around it."""
        rows, cols = np.nonzero(self.mask.any(1))[0], np.nonzero(self.mask.any(0))[0]
        return Part(self.top + int(rows[0]), self.left + int(cols[0]),
                    self.mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])

    def upright_width(self, shear):
        """Its width once the writing's lean is taken off: each ink pixel moved back by `shear` columns per row
        from mid-height (a digit leaning by s columns a row is s x its height wider than it stands)."""
        rows, cols = np.nonzero(self.mask)
        if not len(rows):
            return 0.0
        upright = cols - shear * (rows - (self.mask.shape[0] - 1) / 2)
        return float(upright.max() - upright.min() + 1)


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
    """The digit `part` alone: the ink map within its box and a margin, every other digit's ink blanked (its
    own pixels only, or where given, those of `owner` that are `unit`'s), as the 8-bit white-on-black image
    that preprocess() reads."""
    top, left, bottom, right = part.box
    m = margin(height)
    t, l = max(0, top - m), max(0, left - m)
    if owner is None:
        keep = np.zeros((bottom + m - t, right + m - l), bool)
        keep[top - t:bottom - t, left - l:right - l] = part.mask
        keep = keep[:ink.shape[0] - t, :ink.shape[1] - l]
    else:
        keep = owner[t:bottom + m, l:right + m] == unit
    region = ink[t:bottom + m, l:right + m] * keep
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
        self.ink, self.classify, self.shear, self.reader = ink, classify, shear, reader
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
        last, total = len(lefts) - 1, part.mask.sum()
        spans = {}  # (i, j): the ink between boundaries i and j, as a part, with its width's share of the height
        for i in range(last):
            for j in range(i + 1, last + 1):
                ink = part.mask & lefts[j] & ~lefts[i]
                if (i, j) != (0, last) and ink.sum() < 0.04 * total:
                    continue  # a crumb between two close cuts: no digit, it goes with a neighbour
                piece = Part(part.top, part.left, ink).tight()
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
                key, value = (j, n + 1 if count is not None else 0), before + score(i, j, n)
                if key not in best or value > best[key][0]:
                    best[key] = (value, way + [(i, j)])
        found = best.get((last, count or 0))
        return [spans[k][0] for k in found[1]] if found else None


def touch_note(n, part, height, shear, scale):
    """The note for a part that seems to be several digits and was read as one."""
    top, left, bottom, right = (round(scale * v) for v in part.box)
    many = max(2, round(part.upright_width(shear) / (0.6 * height)))
    return f"line {n + 1}: {many} digits seem to touch at x {left}-{right}, y {top}-{bottom}: read as one"


def find_digits(img, classify, reader=None):
    """The digits on a page as parts, in lines: ([[Part, ...] per line], ink map, ink mask, scale, notes, height)."""
    ink, scale = ink_map(img)
    mask = ink_mask(ink)
    labels, found = pieces(mask, ink)
    found = not_edges(found, mask.shape)
    if found:  # crumbs of noise, far smaller than any stroke, go before joining, which compares pieces two by two
        most = max(p[2] for p in found)
        found = sorted((p for p in found if p[2] >= 0.02 * most), key=lambda p: -p[2])[:MAX_PIECES]
    if found:
        height = digit_height(found)
        found = not_specks(join_pieces(found, height), height)
    if not found:
        return [], ink, mask, scale, [], 0
    height = digit_height(found)
    grouped = [[Part(t, l, np.isin(labels[t:b, l:r], list(p[0]))) for p in line for t, l, b, r in [p[1]]]
               for line in into_lines(found, height)]
    parts = [p for line in grouped for p in line]
    cutter, lines, notes = Cutter(ink, classify, slant(parts), alone=len(parts) == 1, reader=reader), [], []
    for n, parts in enumerate(grouped):
        line_height = float(np.median([p.mask.shape[0] for p in parts]))
        lines.append([])
        for part in parts:
            cut = cutter.split(part, line_height)
            notes.extend(touch_note(n, p, line_height, cutter.shear, scale) for p in cut
                         if p.upright_width(cutter.shear) > TOUCH_NOTE * line_height)
            lines[-1].extend(cut)
    return lines, ink, mask, scale, notes, height


def owners(mask, parts):
    """Which digit each pixel belongs to (1, 2, ... in the order of `parts`): its own ink, and every pixel of
    paper to the digit whose ink is nearest, so that each keeps its soft edge; -1 for ink of no digit
    (specks, the paper's edge) and the paper nearest it, which are blanked."""
    owner = np.where(mask, -1, 0)
    for k, p in enumerate(parts, start=1):
        top, left, bottom, right = p.box
        owner[top:bottom, left:right][p.mask] = k
    nearest = ndimage.distance_transform_edt(owner == 0, return_distances=False, return_indices=True)
    return owner[nearest[0], nearest[1]]


def read_page(img, classify, reader=None):
    """Every digit on the page `img` (a PIL image, as load_image gives it), read by `classify` (a function
    from 28x28 images [N, 28, 28] to probabilities [N, 10]), and where digits touch, by `reader` when given
    (the reader of touching digits, as lab/reader.reader_from_flag gives it: a function from pieces of ink,
    float [h, w], 0 where there is none, to [(digits, [their 10 probabilities])]). Returns a Page.

    Raises ImageProblem when there is no digit at all, as preprocess() does.
    """
    lines, ink, mask, scale, notes, height = find_digits(img, classify, reader)
    if sum(map(len, lines)) <= 1:  # one digit: the whole image, exactly as predict.py reads a single digit
        pixels = preprocess(img)
        top, left, bottom, right = lines[0][0].box if lines else (0, 0, ink.shape[0], ink.shape[1])
        box = (round(scale * left), round(scale * top), round(scale * right), round(scale * bottom))
        return Page([Digit(box, 0, img, pixels, classify(pixels[None])[0])], notes)
    units = [(n, p) for n, line in enumerate(lines) for p in line]
    owner = owners(mask, [p for _, p in units])
    digits = []
    for k, (n, p) in enumerate(units, start=1):
        crop = cut_out(ink, p, height, owner, k)
        top, left, bottom, right = p.box
        box = (round(scale * left), round(scale * top), round(scale * right), round(scale * bottom))
        try:
            digits.append(Digit(box, n, crop, preprocess(crop), p.probabilities, p.probabilities is not None))
        except ImageProblem:  # too faint to find a digit in, alone: not one
            continue
    probs = classify(torch.stack([d.pixels for d in digits]))
    for d, p in zip(digits, probs):
        if d.probabilities is None:  # the reader's reading, where it read touching digits, is kept
            d.probabilities = p
    return Page(digits, notes)


def classifier(model, ckpt, device="cpu"):
    """The net as read_page() asks for it: 28x28 images [N, 28, 28] -> probabilities [N, 10] on the CPU."""
    def classify(pixels):
        with torch.inference_mode():
            return model(net_input(list(pixels), ckpt).to(device)).float().softmax(1).cpu()
    return classify
