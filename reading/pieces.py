"""Steps 2 and 3 of reading a page: the ink's pieces become digits, and the digits lines.

2. Connected pieces of ink; those that belong together become one digit (boxes that overlap
   horizontally: a 5's flag, a 4 or a 7 in two strokes); specks far smaller than the digits, pieces far
   fainter than the page's ink, and the paper's edge, are dropped.
3. Lines: each digit joins the line whose last digit (to its left) is nearest in height, so that a
   sloping line stays one line; lines run top to bottom, digits left to right.

A Digit (below) is one digit as the reading finds it, from a connected piece of ink to what the net read in
it: where it is (its Box), its ink, and what the later steps add. A Box is (left, top, right, bottom), as
Pillow's and the answers' boxes are.
"""

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

# Each constant: what it measures, and where it was chosen (docs/predict.md, "The constants").
FAINT = 0.5  # a piece whose ink is fainter than this share of the page's usual ink is a shadow's edge
CRUMB = 0.02  # a piece with less ink than this share of the largest is noise: dropped before joining
MAX_PIECES = 400  # the largest pieces kept: a page of digits has far fewer
SPECK = 0.35  # a piece lower and narrower than this share of the digits' height is dirt, not a digit
SPECK_INK = 0.1  # ... as is one with this share of the largest piece's ink or less (a hair-thin line, a dot)
JOIN = 0.5  # pieces whose boxes overlap horizontally by this share of the narrower join
JOIN_STACKED = 0.05  # ... or at all, when one is above the other (a 5's flag, a 7's bar)
STACKED_DIGIT = 0.6  # ... unless both are this share of a digit's height or taller: one digit above another
TALLEST = 1.45  # joined pieces are never taller than this many digit heights
BROKEN = 1.7  # ... or, for pieces that meet, than this many times the taller (one digit broken in two)
LINE_REACH = 4  # a digit joins a line whose last digit ends less than this many heights to its left
LINE_HEIGHT = 0.6  # ... and whose middle is within this share of a height of its own


class Box(NamedTuple):
    """Where a digit is: columns left..right, rows top..bottom (right, bottom excluded), as Pillow's crop() takes
    them. In the ink map's pixels while a page is read (reading/ink.py shrinks it), in the image's own in a Page."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def height(self):
        return self.bottom - self.top

    @property
    def width(self):
        return self.right - self.left

    @property
    def middle(self):
        """The row halfway down it."""
        return (self.top + self.bottom) / 2


@dataclass
class Digit:
    """One digit as the reading finds it. Steps 2 to 4 (here and reading/cutting.py) give its box and its ink in
    the ink map; reading/pages.py's read() gives, in the Page, its box in the image's pixels, its line, what
    preprocess() read and the 28x28 image it made; the net (or the reader of touching digits) its probabilities."""

    box: Box
    mask: np.ndarray = None  # its ink within its box in the ink map, while steps 2 to 4 find it (None in a Page)
    probabilities: torch.Tensor = None  # the net's 10 probabilities (or the reader's)
    by_reader: bool = False  # read by the reader of touching digits, not the net
    line: int = 0  # 0: the top line
    crop: Image.Image = None  # what preprocess() read: this digit alone, white on black (the image, for one digit)
    pixels: torch.Tensor = None  # the 28x28 image it became

    @property
    def digit(self):
        return int(self.probabilities.argmax())

    @property
    def ink(self):
        """How many pixels of ink it holds."""
        return int(self.mask.sum())

    def tight(self):
        """The same ink in the smallest box around it."""
        rows, cols = np.nonzero(self.mask.any(1))[0], np.nonzero(self.mask.any(0))[0]
        left, top = self.box.left + int(cols[0]), self.box.top + int(rows[0])
        mask = self.mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return replace(self, box=Box(left, top, left + mask.shape[1], top + mask.shape[0]), mask=mask)

    def upright_width(self, shear):
        """Its width once the writing's lean is taken off: each ink pixel moved back by `shear` columns per row
        from mid-height (a digit leaning by s columns a row is s x its height wider than it stands)."""
        rows, cols = np.nonzero(self.mask)
        if not len(rows):
            return 0.0
        upright = cols - shear * (rows - (self.mask.shape[0] - 1) / 2)
        return float(upright.max() - upright.min() + 1)


def merged(a, b, box):
    """Digits a and b as one, in `box` (the smallest around both): their ink together."""
    mask = np.zeros((box.height, box.width), bool)
    for d in (a, b):
        top, left = d.box.top - box.top, d.box.left - box.left
        mask[top : top + d.box.height, left : left + d.box.width] |= d.mask
    return Digit(box, mask)


def pieces(mask, ink=None):
    """Connected pieces of ink (8-neighbours), each a Digit (its box and its ink). Given the ink map, pieces far
    fainter than the others are left out: the edge of a shadow, or of the paper, a smudge (ink is about as dark
    everywhere on a page)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    # a piece's strength: its darkest ink, smoothed over 3x3 pixels so that no single noisy pixel counts
    strength = (
        ndimage.maximum(ndimage.uniform_filter(ink, 3), labels, np.arange(1, n + 1))
        if ink is not None and n
        else np.ones(n)
    )
    usual = np.median(np.repeat(strength, counts[1:])) if n else 1.0  # over the ink's pixels: big pieces weigh more
    found = []
    for i, s in enumerate(ndimage.find_objects(labels), start=1):
        if strength[i - 1] >= FAINT * usual:
            box = Box(s[1].start, s[0].start, s[1].stop, s[0].stop)
            found.append(Digit(box, labels[s] == i))
    return found


def without_crumbs(found):
    """The MAX_PIECES largest pieces, largest first, less crumbs of noise far smaller than any stroke: they go
    before joining, which compares pieces two by two."""
    if not found:
        return found
    most = max(p.ink for p in found)
    return sorted((p for p in found if p.ink >= CRUMB * most), key=lambda p: -p.ink)[:MAX_PIECES]


def digit_height(found):
    """The height of a digit on this page: the median height of the pieces at least half as tall as the
    tallest (a digit's broken strokes, a 5's flag, are shorter than the digits)."""
    tallest = max(p.box.height for p in found)
    return float(np.median([p.box.height for p in found if p.box.height >= 0.5 * tallest]))


def joined(p, q, height):
    """Boxes p and q as one, or None when they do not belong together: they must overlap horizontally by JOIN of
    the narrower (JOIN_STACKED when one is above the other, their boxes overlapping by at most half the shorter's
    height), and not make one taller than a digit: TALLEST digit heights, or, for pieces that meet, BROKEN times
    the taller (a digit broken in two on a page of that digit alone). Two pieces one above the other with paper
    between, both at least STACKED_DIGIT tall, are never joined: they are two lines' digits."""
    overlap = min(p.right, q.right) - max(p.left, q.left)
    union = Box(min(p.left, q.left), min(p.top, q.top), max(p.right, q.right), max(p.bottom, q.bottom))
    stacked = min(p.bottom, q.bottom) - max(p.top, q.top) <= 0.5 * min(p.height, q.height)
    share = JOIN_STACKED if stacked else JOIN
    # one above the other with paper between: a digit's flag or bar floating over it, or two lines'
    # digits, which each are as tall as most of a digit and together taller than one
    apart = stacked and max(p.top, q.top) - min(p.bottom, q.bottom) >= 0.1 * height
    two_digits = apart and min(p.height, q.height) >= STACKED_DIGIT * height
    tall = TALLEST * height if apart else max(TALLEST * height, BROKEN * max(p.height, q.height))
    if overlap >= share * min(p.width, q.width) and union.height <= tall and not two_digits:
        return union
    return None


def join_pieces(found, height):
    """The pieces, those that belong together (joined()) made one, until no two more do."""
    found = list(found)
    changed = True
    while changed:
        changed = False
        for a in range(len(found)):
            for b in range(a + 1, len(found)):
                union = joined(found[a].box, found[b].box, height)
                if union is not None:
                    found[a] = merged(found[a], found[b], union)
                    del found[b]
                    changed = True
                    break
            if changed:
                break
    return found


def not_edges(found, shape):
    """The pieces less the paper's edge: ink along a side of the photo, nearly all of its length or a strip
    along it three times longer than thick: the table beyond the paper, or its shade."""
    h, w = shape

    def edge(p):
        left, top, right, bottom = p.box
        tall = p.box.height
        wide = p.box.width
        along_side = (left == 0 or right == w) and tall >= 3 * wide  # a strip down the left or right side
        along_top = (top == 0 or bottom == h) and wide >= 3 * tall  # ... or along the top or the bottom
        touches = top == 0 or left == 0 or bottom == h or right == w
        return along_side or along_top or touches and (tall >= 0.9 * h or wide >= 0.9 * w)

    return [p for p in found if not edge(p)]


def not_specks(found, height):
    """The pieces that can be digits: not specks far smaller than a digit, nor what has SPECK_INK of the
    largest digit's ink or less: hair-thin lines (the shade along the paper's edge), dots (a 1 written
    small and thin still has a fifth of a bold 8's)."""
    most = max(p.ink for p in found)

    def small(p):
        return p.box.height < SPECK * height and p.box.width < SPECK * height

    return [p for p in found if not small(p) and p.ink >= SPECK_INK * most]


def into_lines(found, height):
    """Group digits into lines by chaining neighbours (a sloping line stays one), then order lines top to
    bottom and digits left to right. Returns a list of lines, each a list of Digits."""
    lines = []
    for p in sorted(found, key=lambda p: p.box.left):
        near = [
            (abs(p.box.middle - line[-1].box.middle), i)
            for i, line in enumerate(lines)
            if p.box.left - line[-1].box.right < LINE_REACH * height
        ]
        near = [n for n in near if n[0] < LINE_HEIGHT * height]
        if near:
            lines[min(near)[1]].append(p)
        else:
            lines.append([p])
    return sorted(lines, key=lambda line: np.mean([p.box.middle for p in line]))
