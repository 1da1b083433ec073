"""Your own digit images made MNIST-like, as predict.py and draw.py read them.

A photo or a drawing is not an MNIST image. MNIST digits are white ink on black, fitted into a
20x20 box (aspect ratio kept, antialiased) and placed in a 28x28 image so that their centre of
mass is at the centre. preprocess() does exactly that; without it a network that scores 99% on
MNIST gets your digits wrong (docs/predict.md has each step). Its grey levels and Otsu's threshold are
reading/ink.py's, as a page's are.
"""

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from lab.data import MEAN, STD
from reading.ink import MIN_CONTRAST, WORK_SIZE, ImageProblem, otsu, to_grey

MAX_PIXELS = 50_000_000  # larger images are refused (a photo of one digit needs far fewer)


# ---------------------------------------------------------------- reading an image


def load_image(source):
    """Open an image: a path, the file's bytes, or a binary file object (draw.py passes the bytes it was sent).

    Any size and format Pillow reads, first frame, EXIF orientation applied.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif not hasattr(source, "read"):
        source = Path(source)
        if not source.exists():
            raise ImageProblem("no such file")
        if not source.is_file():
            raise ImageProblem("not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse large images ourselves
            with Image.open(source) as img:  # reads the header only
                if img.width * img.height > MAX_PIXELS:
                    raise ImageProblem(
                        f"image too large ({img.width}x{img.height} pixels, over "
                        f"{MAX_PIXELS // 1_000_000} megapixels): crop or shrink it"
                    )
                img.seek(0)  # the first frame of a GIF or WebP animation
                img.load()  # decodes now, so a truncated file fails here
                return ImageOps.exif_transpose(img)  # a copy, upright as the camera meant it
    except Image.DecompressionBombError:
        raise ImageProblem(f"image too large (over {MAX_PIXELS // 1_000_000} megapixels)") from None
    except UnidentifiedImageError:
        raise ImageProblem("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageProblem(f"cannot decode the image (truncated or corrupt: {str(e)[:80]})") from None


# ---------------------------------------------------------------- preprocessing, as MNIST was made


def flatten_paper(x, paper):
    """Subtract the plane a + b*row + c*col fitted to the paper pixels: removes uneven lighting."""
    h, w = x.shape
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    design = torch.stack([torch.ones_like(rows), rows, cols], -1)
    idx = paper.flatten().nonzero().flatten()
    if len(idx) < 3:
        return x
    idx = idx[torch.linspace(0, len(idx) - 1, min(len(idx), 100_000)).long()]
    coef = torch.linalg.lstsq(design.reshape(-1, 3)[idx], x.flatten()[idx].unsqueeze(1)).solution
    return x - (design @ coef).squeeze(-1)


def preprocess(img):
    """A PIL image of one digit -> the 28x28 MNIST-style image the net expects (float, 0..1, white ink).

    1. grey levels; transparent pixels are background
    2. polarity: the paper is what surrounds the digit (the image border); if it is lighter than
       the ink, invert, so that ink is white on black as in MNIST
    3. even out the paper's shading, then find the ink with Otsu's threshold
    4. crop to the ink's bounding box, scale its longest side to 20 px (antialiased, aspect kept)
    5. paste into 28x28 with the centre of mass at the centre
    Raises ImageProblem when there is no ink to find.
    """
    x = to_grey(img)
    h, w = x.shape
    if h < 2 or w < 2:
        raise ImageProblem("image too small")
    if max(h, w) > WORK_SIZE:  # 16-bit and float images were not shrunk by Pillow
        size = (max(2, round(h * WORK_SIZE / max(h, w))), max(2, round(w * WORK_SIZE / max(h, w))))
        x = F.interpolate(x[None, None], size=size, mode="area")[0, 0]
        h, w = size

    t = otsu(x)
    band = max(1, round(0.03 * min(h, w)))
    border = torch.cat([x[:band].flatten(), x[-band:].flatten(), x[:, :band].flatten(), x[:, -band:].flatten()])
    if border.median() > t:  # light paper, dark ink
        x = 1 - x
        t = 1 - t
    x = flatten_paper(x, x <= t)
    t = otsu(x.clamp(0, 1))
    ink, paper = x > t, x <= t
    if ink.sum() < 4 or paper.sum() < 4:
        raise ImageProblem("no digit found (a blank or uniform image)")
    paper_top = torch.quantile(x[paper], 0.99)
    ink_level = torch.quantile(x[ink], 0.75)
    if ink_level - x[paper].median() < MIN_CONTRAST:
        raise ImageProblem("no digit found (no ink stands out from the background: a blank page?)")
    x = ((x - paper_top) / (ink_level - paper_top)).clamp(0, 1)

    # The bounding box takes in the ink's soft edge (MNIST's box holds every non-zero pixel), but only
    # within one final pixel (1/20 of the digit) of solid ink, so that specks on the paper stay out.
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    r = math.ceil(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / 20)
    # (a square max filter: scipy.ndimage's takes a few comparisons per pixel whatever its size, where
    # torch's max_pool2d takes 2r+1 in each direction: 12 times as long on a phone photo, measured)
    near = torch.from_numpy(ndimage.maximum_filter(ink.numpy().view(np.uint8), size=2 * r + 1, mode="constant") > 0)
    keep = near & (x > 0.05)
    rows, cols = keep.any(1).nonzero().flatten(), keep.any(0).nonzero().flatten()
    x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = x.shape
    scale = 20 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(x[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    x = x.clamp(0, 1)

    total = x.sum()
    if total <= 0:
        raise ImageProblem("no digit found")
    cy = (x.sum(1) * torch.arange(size[0])).sum() / total
    cx = (x.sum(0) * torch.arange(size[1])).sum() / total
    # MNIST's centres of mass sit at pixel (14, 14), counting from 0 (mean 14.00, spread 0.29: whole-pixel shifts)
    top = min(max(round(14 - float(cy)), 0), 28 - size[0])
    left = min(max(round(14 - float(cx)), 0), 28 - size[1])
    out = torch.zeros(28, 28)
    out[top : top + size[0], left : left + size[1]] = x
    return out


def net_input(seen, ckpt):
    """28x28 images from preprocess() -> the batch [N, 1, 28, 28] the net takes, normalised as in training."""
    norm = ckpt.get("normalization", {})
    return ((torch.stack(seen) - norm.get("mean", MEAN)) / norm.get("std", STD)).unsqueeze(1)
