"""Handwriting made from MNIST digits, written one way: pages of digits as a phone photographs them (what
bench.py --pages measures reading/pages.py on, and what its tests read), and pieces of touching digits
for the reader of touching digits to learn from (reading/reader.py, train_reader.py). Both are written
by layout(): the same size, slant, pen, sloping lines and digits pressed together until their ink touches.

A sheet holds 1-4 lines of 3-8 digits written with one spacing (SPACINGS: from wide apart to
touching, and overlapping), and what a photo of a written page has: digits of varied size and slant,
a thinner or thicker pen, lines that slope, tinted paper, a soft shadow, specks of dirt, sometimes
the table at an edge, often JPEG. The truth comes with it: each line's digits and each digit's box.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

# The gap between neighbours, as a share of the line's digit height: drawn anew for each pair.
# On a "touching" sheet half the pairs are written close, the other half so that their ink touches:
# the next digit is moved left until its ink meets its neighbour's, then pressed in by up to 6% of
# the height (TOUCHING). On an "overlapping" sheet the other half overlap their boxes by a tenth to a
# quarter of the height instead, so that the digits' ink often crosses: beyond what a written number
# usually has, and reported apart from the others.
SPACINGS = {
    "wide": (0.45, 0.8),
    "normal": (0.15, 0.35),
    "close": (0.03, 0.1),
    "touching": None,
    "overlapping": (-0.25, -0.1),
}
CLOSE_TOO = {"touching": 0.5, "overlapping": 0.5}  # the share of a sheet's pairs written with "close" spacing instead
TOUCHING = (0.0, 0.06)  # how far a touching pair's ink is pressed together, past where it meets
COUNTS = (1, 2, 3, 4, 5)  # digits in a piece made to learn from ...
COUNT_SHARE = (0.12, 0.38, 0.25, 0.15, 0.10)  # ... this often: most touching is two digits


@dataclass
class Sheet:
    image: Image.Image  # RGB, as a phone would save it
    lines: list  # each line's digits, top to bottom: ["00568", "2501"]
    boxes: list  # each line's digit boxes (left, top, right, bottom) in the image's pixels
    spacing: str
    specks: int = 0  # specks of dirt on it
    edge: int = None  # where the table shows beyond the paper: 0 above, 1 left, 2 below, 3 right; None: nowhere


def digit_ink(digit, height, slant, pen):
    """A 28x28 MNIST digit (uint8, white ink) -> ink 0..1 about `height` px tall, leaning by `slant`
    (x moves slant px per px up), its strokes grown (pen > 0) or thinned (pen < 0) by |pen| MNIST pixels."""
    rows, cols = np.nonzero(digit > 30)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = height / crop.shape[0]
    pad = int(abs(pen) * scale) + 2
    img = Image.fromarray(np.pad(crop, pad))
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
    w, h = img.size
    img = img.transform(
        (w + int(abs(slant) * h) + 1, h),
        Image.Transform.AFFINE,
        (1, slant, -max(slant, 0) * h, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    ink = np.asarray(img, np.float32) / 255
    k = int(round(abs(pen) * scale))
    if k:  # a round pen of k px more or less
        disk = np.hypot(*np.mgrid[-k : k + 1, -k : k + 1]) <= k
        ink = (ndimage.grey_dilation if pen > 0 else ndimage.grey_erosion)(ink, footprint=disk)
    rows, cols = np.nonzero(ink > 0.1)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def layout(digits, labels, rng, spacing, shape=None, gaps=None):
    """Where each digit goes: a list of lines, each a list of (ink, left, top, label) on an unbounded canvas.
    shape: how many digits each line holds (default: 1-4 lines of 3-8, at random); gaps: the gap after
    each digit (a share of the height, or None for "touching"), in place of the spacing's."""
    height = rng.uniform(40, 80)
    slant = rng.uniform(-0.25, 0.35)
    pen = rng.uniform(-0.4, 1.2)
    lines, k, y = [], 0, 0.0
    for count in shape or [rng.integers(3, 9) for _ in range(rng.integers(1, 5))]:
        slope, line, gap = np.tan(np.radians(rng.uniform(-4, 4))), [], 0.0
        for _ in range(count):
            h = height * rng.uniform(0.85, 1.15)
            ink = digit_ink(digits[k % len(digits)], h, slant + rng.uniform(-0.05, 0.05), pen)
            x = 0.0 if not line else line[-1][1] + line[-1][0].shape[1] + (gap or 0.0) * height
            top = int(y + slope * x + rng.uniform(-0.06, 0.06) * height - ink.shape[0] / 2)
            if line and gap is None:  # touching: where the ink meets its neighbour's, pressed in a little
                x = contact(*line[-1][:3], ink, top) - rng.uniform(*TOUCHING) * height
            line.append((ink, int(x), top, str(labels[k % len(digits)])))
            gap = gaps[k] if gaps is not None else pair_gap(spacing, rng)
            k += 1
        lines.append(line)
        y += height * rng.uniform(1.45, 1.9) + abs(slope) * line[-1][1]
    return lines, height


def pair_gap(spacing, rng):
    """The gap after a digit, as a share of the height, for a sheet of `spacing`; None: the next one touches it."""
    if rng.random() < CLOSE_TOO.get(spacing, 0):
        return rng.uniform(*SPACINGS["close"])
    return None if SPACINGS[spacing] is None else rng.uniform(*SPACINGS[spacing])


def contact(prev, prev_left, prev_top, ink, top):
    """The left edge at which `ink` (its top at `top`), coming from the right, first meets `prev`'s ink: in
    some row both have ink, and no further left. Rows that only one of them reaches do not count."""
    meets = []
    for r in range(max(prev_top, top), min(prev_top + prev.shape[0], top + ink.shape[0])):
        a, b = np.nonzero(prev[r - prev_top] > 0.3)[0], np.nonzero(ink[r - top] > 0.3)[0]
        if len(a) and len(b):
            meets.append(prev_left + a.max() - b.min())
    return max(meets) if meets else prev_left + prev.shape[1]


def shadow(h, w, rng):
    """A soft shadow across part of the page (a hand or a phone above it): 1 where lit, down to 1 - depth."""
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    angle, depth = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.45)
    edge = np.cos(angle) * (xs - rng.uniform(0.2, 0.8)) + np.sin(angle) * (ys - rng.uniform(0.2, 0.8))
    soft = 1 / (1 + np.exp(-edge / rng.uniform(0.03, 0.12)))  # a ramp from lit to dark
    return 1 - depth * soft - rng.uniform(0, 0.1) * xs  # and light that fades a little across the page


def make_sheet(digits, labels, rng, spacing, shape=None, gaps=None):
    """A photo of a sheet written with `spacing` (a key of SPACINGS), from the MNIST digits given (uint8
    28x28, used in order) and their labels; shape and gaps as for layout()."""
    lines, height = layout(digits, labels, rng, spacing, shape, gaps)
    margin = int(height * rng.uniform(0.6, 1.2))
    canvas, placed = press([(ink, x, y) for line in lines for ink, x, y, _ in line], margin)
    boxes = []
    for line in lines:  # each line's boxes, in the order pressed
        boxes.append(placed[: len(line)])
        placed = placed[len(line) :]
    h, w = canvas.shape
    dirt = specks(canvas, height, rng)
    paper = np.array([rng.uniform(215, 250), rng.uniform(210, 245), rng.uniform(195, 235)])
    pen_colour = np.array([rng.uniform(10, 60), rng.uniform(10, 60), rng.uniform(30, 110)])
    a = canvas[..., None]
    rgb = (paper * (1 - a) + pen_colour * a) * shadow(h, w, rng)[..., None] + rng.normal(0, 2.5, (h, w, 1))
    rgb, boxes, edge = table_edge(rgb, boxes, rng)
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.6:  # as most phones save it
        out = io.BytesIO()
        image.save(out, "JPEG", quality=int(rng.integers(60, 92)))
        image = Image.open(out).convert("RGB")
    return Sheet(image, ["".join(d for *_, d in line) for line in lines], boxes, spacing, dirt, edge)


def press(placed, margin=0):
    """Digits' ink [(ink, left, top)] on one canvas with `margin` around them all, where they overlap the darker
    of the two: the canvas and each one's box (left, top, right, bottom) on it."""
    x0 = min(x for _, x, _ in placed)
    y0 = min(y for _, _, y in placed)
    w = max(x + ink.shape[1] for ink, x, _ in placed) - x0 + 2 * margin
    h = max(y + ink.shape[0] for ink, _, y in placed) - y0 + 2 * margin
    canvas = np.zeros((h, w), np.float32)
    boxes = []
    for ink, x, y in placed:
        left = x - x0 + margin
        top = y - y0 + margin
        region = canvas[top : top + ink.shape[0], left : left + ink.shape[1]]
        np.maximum(region, ink, out=region)
        boxes.append((left, top, left + ink.shape[1], top + ink.shape[0]))
    return canvas, boxes


def specks(canvas, height, rng):
    """A few specks of dirt or pencil dust, far smaller than a digit, away from the digits' ink: how many."""
    h, w = canvas.shape
    made = 0
    for _ in range(rng.integers(0, 5)):
        r = max(1.0, height * rng.uniform(0.02, 0.05))
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        ys, xs = np.ogrid[0:h, 0:w]
        dot = np.clip(r - np.hypot(ys - cy, xs - cx), 0, 1)
        if not (canvas[dot > 0] > 0.05).any():
            np.maximum(canvas, dot * rng.uniform(0.5, 1.0), out=canvas)
            made += 1
    return made


def table_edge(rgb, boxes, rng):
    """Now and then, the table beyond the paper's edge along one side of the photo (boxes moved to match):
    (the photo, the boxes, the side or None)."""
    if rng.random() < 0.7:
        return rgb, boxes, None
    h, w, _ = rgb.shape
    side, band = int(rng.integers(4)), int(rng.uniform(0.03, 0.08) * min(h, w)) + 2
    table = np.array([rng.uniform(60, 140), rng.uniform(50, 110), rng.uniform(30, 90)])
    grown = np.empty((h + band * (side % 2 == 0), w + band * (side % 2 == 1), 3))
    grown[...] = table + rng.normal(0, 4, grown.shape)
    top, left = band * (side == 0), band * (side == 1)  # 0: above, 1: left, 2: below, 3: right
    grown[top : top + h, left : left + w] = rgb
    return grown, [[(a + left, b + top, c + left, d + top) for a, b, c, d in line] for line in boxes], side


def make_sheets(images, labels, per_spacing, seed=0):
    """`per_spacing` sheets of each spacing from MNIST test digits (uint8 [N, 28, 28] and labels), drawn in a
    fixed random order: the same sheets for the same seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    images, labels = np.asarray(images)[order], np.asarray(labels)[order]
    sheets, k = [], 0
    for spacing in SPACINGS:
        for _ in range(per_spacing):
            sheet = make_sheet(images[k : k + 32], labels[k : k + 32], rng, spacing)
            k += sum(map(len, sheet.lines))
            sheets.append(sheet)
    return sheets


# ---------------------------------------------------------------- pieces of touching digits, to learn from


def piece_gap(rng):
    """The gap after a digit in a piece to learn from, as a share of the height; None: the next one touches it."""
    way = rng.random()
    if way < 0.6:  # touching, pressed together as on a "touching" sheet
        return None
    if way < 0.85:  # overlapping boxes, strokes that may cross, as on an "overlapping" sheet
        return rng.uniform(-0.25, -0.1)
    return rng.uniform(-0.05, 0.05)  # just apart or just touching: joined into one piece by a stroke's end


def make_piece(images, labels, rng):
    """A piece of touching digits as reading/pages.py cuts one out of a page: ink 0..1 on 0, and its digits.
    Written by layout() as a sheet's line of len(digits) is, from the MNIST digits `images` (uint8 [N, 28, 28])
    and their `labels`."""
    count = int(rng.choice(COUNTS, p=COUNT_SHARE))
    chosen = rng.integers(0, len(images), count)
    gaps = [piece_gap(rng) for _ in range(count)]
    (line,), _ = layout(images[chosen], labels[chosen], rng, None, [count], gaps)
    canvas, _ = press([(ink, x, y) for ink, x, y, _ in line])
    # as a photo and reading/pages.py leave it: a little blur, uneven ink, noise, and nothing below the threshold
    blur = rng.uniform(0, 1.2)
    if blur > 0.3:
        canvas = ndimage.gaussian_filter(canvas, blur)
    canvas = np.clip(canvas * rng.uniform(0.7, 1.1) + rng.normal(0, 0.03, canvas.shape), 0, 1)
    return canvas * (canvas > rng.uniform(0.2, 0.5)), "".join(d for *_, d in line)


# ---------------------------------------------------------------- scoring a reading against the truth


def edit_distance(a, b):
    """Levenshtein distance: the fewest digits to change, add or drop to make string a into b."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def order_right(sheet, boxes_read):
    """Whether the digits found come in the sheet's reading order. boxes_read: [(line, box)] in the order read.

    Each true digit is matched to the digit read whose box's centre lies in its own box; those matched
    must come in the same order (two true digits read as one count as in order), on the same line as their
    neighbour in a line, on a later one after it."""
    found = []
    for line, boxes in enumerate(sheet.boxes):
        for a, b, c, d in boxes:
            hits = [
                k
                for k, (_, (x0, y0, x1, y1)) in enumerate(boxes_read)
                if a <= (x0 + x1) / 2 <= c and b <= (y0 + y1) / 2 <= d
            ]
            if hits:
                found.append((line, hits[0], boxes_read[hits[0]][0]))
    return all(
        k1 <= k2 and (l2 - l1 == 0) == (r2 - r1 == 0) and r2 >= r1
        for (l1, k1, r1), (l2, k2, r2) in zip(found, found[1:])
    )


def score(sheet, lines_read, boxes_read):
    """(digits, digits right, lines, lines right, order right) of one sheet's reading.

    Digits right counts as an OCR's character accuracy does: the true digits less the changes, additions
    and drops that turn what was read into the truth, line by line (a line read that is not there counts
    all its digits as added)."""
    n = sum(map(len, sheet.lines))
    lines_read = lines_read + [""] * (len(sheet.lines) - len(lines_read))
    errors = sum(edit_distance(r, t) for r, t in zip(lines_read, sheet.lines))
    errors += sum(map(len, lines_read[len(sheet.lines) :]))
    right_lines = sum(r == t for r, t in zip(lines_read, sheet.lines))
    return n, max(0, n - errors), len(sheet.lines), right_lines, order_right(sheet, boxes_read)
