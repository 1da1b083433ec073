"""Every digit in an image, in reading order: one digit, a written number, a sheet of digits, a photo of
any of them. read() is the one way an image becomes digits: predict.py, test.py --images, draw.py and
bench.py --pages all call it, and a digit alone is a page of one digit, made by digit_alone() (which draw.py's
/explain, /attack and /collect call too, as they need no pass of the net).

read(image, classify) finds the digits, cuts each one out on its own and gives it to preprocess()
(reading/images.py), the one way a digit becomes 28x28; `classify` is the net (classifier() makes it).
The steps, each in its module, in the order they run:

1. the ink (reading/ink.py): what stands out from the paper, its light and shadows;
2. the pieces and 3. their lines (reading/pieces.py): connected ink joined into digits, specks and the
   paper's edge dropped, digits chained into lines, top to bottom and left to right;
4. cutting touching digits (reading/cutting.py): a piece wider than a digit, cut where the net (or the
   reader of touching digits) reads its parts most surely;
5. here: each digit cut out alone, with the paper nearest it, read by preprocess() and the net.

A page that holds one digit goes to preprocess() whole, exactly as predict.py has always read a file.

scipy.ndimage does the image work (connected components and their boxes, grey morphology, distance
maps): the field's well-kept library for it, in C, already beside numpy; OpenCV would do the same
at ten times the download, and hand-written labelling would be slow Python or subtle code to check.
"""

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from reading.cutting import TOUCH_NOTE, Cutter, cut_out, slant, touch_note
from reading.images import ImageProblem, load_image, net_input, preprocess
from reading.ink import ink_map, ink_mask
from reading.pieces import (
    Box,
    Digit,
    digit_height,
    into_lines,
    join_pieces,
    not_edges,
    not_specks,
    pieces,
    without_crumbs,
)


@dataclass
class Page:
    image: Image.Image  # the image read, as load_image() opened it
    digits: list  # Digits (reading/pieces.py), in reading order, their boxes in the image's pixels
    notes: list = field(default_factory=list)  # one line each: what could not be done ("2 digits touch at ...")

    @property
    def lines(self):
        """The number read on each line, top to bottom: ["00568", "2501"]."""
        out = [""] * (1 + max((d.line for d in self.digits), default=-1))
        for d in self.digits:
            out[d.line] += str(d.digit)
        return out


@dataclass
class Found:
    """What find_digits() found on a page, in its ink map's pixels."""

    lines: list  # the digits, [[Digit, ...] per line], top to bottom, each line left to right
    ink: np.ndarray  # the ink map (reading/ink.py), float, 0 where there is none
    mask: np.ndarray  # where the ink is
    scale: float  # the image's pixels per ink map pixel
    notes: list  # one line each: the digits that seem to touch and were read as one
    height: float  # a digit's height on this page (0 with no digit)


def in_image(box, scale):
    """A box in the ink map's pixels as a box in the image's own."""
    return Box(*(round(scale * v) for v in box))


def find_digits(img, classify, reader=None):
    """The digits on a page, in lines (steps 1 to 4): a Found."""
    ink, scale = ink_map(img)
    mask = ink_mask(ink)
    found = without_crumbs(not_edges(pieces(mask, ink), mask.shape))
    if found:
        height = digit_height(found)
        found = not_specks(join_pieces(found, height), height)
    if not found:
        return Found([], ink, mask, scale, [], 0)
    height = digit_height(found)
    grouped = into_lines(found, height)
    parts = [p for line in grouped for p in line]
    cutter = Cutter(ink, classify, slant(parts), alone=len(parts) == 1, reader=reader)
    lines = []
    notes = []
    for n, parts in enumerate(grouped):
        line_height = float(np.median([p.mask.shape[0] for p in parts]))
        lines.append([])
        for part in parts:
            cut = cutter.split(part, line_height)
            notes.extend(
                touch_note(n, p, line_height, cutter.shear, scale)
                for p in cut
                if p.upright_width(cutter.shear) > TOUCH_NOTE * line_height
            )
            lines[-1].extend(cut)
    return Found(lines, ink, mask, scale, notes, height)


def owners(mask, parts):
    """Which digit each pixel belongs to (1, 2, ... in the order of `parts`): its own ink, and every pixel of
    paper to the digit whose ink is nearest, so that each keeps its soft edge; -1 for ink of no digit
    (specks, the paper's edge) and the paper nearest it, which are blanked."""
    owner = np.where(mask, -1, 0)
    for k, p in enumerate(parts, start=1):
        left, top, right, bottom = p.box
        owner[top:bottom, left:right][p.mask] = k
    nearest = ndimage.distance_transform_edt(owner == 0, return_distances=False, return_indices=True)
    return owner[nearest[0], nearest[1]]


def read(image, classify, reader=None, one_digit=False):
    """Every digit in `image`, in reading order: a Page. `image` is a PIL image or what load_image() opens (a
    path, a file's bytes). `classify` is the net, as classifier() makes it: a function from 28x28 images
    [N, 28, 28] to probabilities [N, 10]. Where digits touch, `reader` reads them when given (the reader of
    touching digits, as reading/reader.reader_from_flag gives it: a function from pieces of ink, float [h, w],
    0 where there is none, to [(digits, [their 10 probabilities])]). `one_digit`: the caller knows that the
    image holds one digit (a labelled file of test.py --images, a drawing sent to draw.py's /predict), and it is
    read as a page of one digit is, whatever pieces of ink it holds (a digit drawn on a coarse grid is many).

    Raises ImageProblem (one line) for a file that cannot be read, or that holds no digit at all.
    """
    img = opened(image)
    if one_digit:
        return page_of_one(digit_alone(img), classify, [])
    found = find_digits(img, classify, reader)
    lines = found.lines
    if sum(map(len, lines)) <= 1:
        box = lines[0][0].box if lines else Box(0, 0, found.ink.shape[1], found.ink.shape[0])
        return page_of_one(digit_alone(img, in_image(box, found.scale)), classify, found.notes)
    units = [(n, p) for n, line in enumerate(lines) for p in line]
    owner = owners(found.mask, [p for _, p in units])
    digits = []
    for k, (n, p) in enumerate(units, start=1):
        crop = cut_out(found.ink, p, found.height, owner, k)
        try:
            pixels = preprocess(crop)
        except ImageProblem:  # too faint to find a digit in, alone: not one
            continue
        digits.append(replace(p, box=in_image(p.box, found.scale), mask=None, line=n, crop=crop, pixels=pixels))
    probs = classify(torch.stack([d.pixels for d in digits]))
    for d, p in zip(digits, probs):
        if d.probabilities is None:  # the reader's reading, where it read touching digits, is kept
            d.probabilities = p
    return Page(img, digits, notes=found.notes)


def opened(image):
    """A PIL image as it is; a path or a file's bytes opened by load_image()."""
    return image if isinstance(image, Image.Image) else load_image(image)


def digit_alone(image, box=None):
    """`image` (a PIL image, a path, a file's bytes) read as one digit, whole: a Digit whose pixels are the 28x28
    image preprocess() makes of it, exactly as predict.py has always read a digit alone, before the net's pass.
    The one way any image of one digit becomes 28x28: read() with one_digit, draw.py's /explain, /attack and
    /collect. `box`: where the digit is in the image's pixels (default: the whole image)."""
    img = opened(image)
    return Digit(box or Box(0, 0, img.width, img.height), crop=img, pixels=preprocess(img))


def page_of_one(digit, classify, notes):
    """A page of the one digit `digit`, read by the net."""
    digit.probabilities = classify(digit.pixels[None])[0]
    return Page(digit.crop, [digit], notes)


def classifier(model, ckpt, device="cpu"):
    """The net as read() asks for it: 28x28 images [N, 28, 28] -> probabilities [N, 10] on the CPU."""

    def classify(pixels):
        with torch.inference_mode():
            return model(net_input(list(pixels), ckpt).to(device)).float().softmax(1).cpu()

    return classify
