"""The ink of an image, step 1 of reading one: its grey levels, Otsu's threshold, and on a page the ink
standing out from its paper.

One digit (reading/images.py's preprocess) and a page (reading/pages.py) both start here: to_grey() turns
any Pillow image into grey levels, otsu() splits them into ink and paper. A page needs more than that: its
paper is what surrounds the writing, and the paper's own light, shadows and the table beyond its edge
included, is a grey opening of the page larger than any stroke; what stands out from it by Otsu's
threshold is ink (ink_map, ink_mask).
"""

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

# Each constant: what it measures, and where it was chosen (docs/predict.md, "The constants").
WORK_SIZE = 1024  # images are shrunk to this longest side first: 20 px is the goal
MIN_CONTRAST = 0.15  # ink must differ from the paper by 15% of the grey range
PAPER = 0.25  # the grey opening's size, as a share of the page's shorter side: wider than any stroke


class ImageProblem(Exception):
    """This one file cannot be used (the others still are)."""


def to_grey(img):
    """Any Pillow mode -> float tensor [H, W] in 0..1 (1 = white). Transparent pixels become background."""
    if img.mode.startswith("I"):  # 16- or 32-bit grey
        a = np.asarray(img, dtype=np.float32)
        return torch.from_numpy(a / (65535.0 if a.max() > 255 else 255.0)).clamp_(0, 1)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
        return torch.from_numpy(a / max(float(a.max()), 1e-6)).clamp_(0, 1)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    img = img.convert("RGBA" if has_alpha else "RGB")
    if max(img.size) > WORK_SIZE:  # area-averaging shrink (alpha-aware for RGBA)
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    a = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    grey = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    if not has_alpha:
        return grey
    alpha = a[..., 3]
    if alpha.sum() == 0:
        return torch.zeros_like(grey)  # fully transparent: nothing drawn
    # Ink drawn on a transparent canvas: put it on paper of the opposite shade.
    ink_shade = (grey * alpha).sum() / alpha.sum()
    paper = 1.0 if ink_shade < 0.5 else 0.0
    return grey * alpha + paper * (1 - alpha)


def otsu(x):
    """Otsu's threshold for values in 0..1: the split that best separates two classes."""
    hist = torch.histc(x, bins=256, min=0.0, max=1.0).double()
    centres = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    w0 = hist.cumsum(0)
    w1 = hist.sum() - w0
    m0 = (hist * centres).cumsum(0)
    between = (m0 / w0.clamp(min=1) - ((hist * centres).sum() - m0) / w1.clamp(min=1)) ** 2 * w0 * w1
    return float((between.argmax() + 1) / 256)


# ---------------------------------------------------------------- a page's ink


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
    residual = np.concatenate(
        [
            (x[r0:r1, c0:c1] - np.median(x[r0:r1, c0:c1])).ravel()
            for r0, r1 in zip(rows, rows[1:])
            for c0, c1 in zip(cols, cols[1:])
        ]
    )
    near_low, near_high = np.quantile(residual, [0.01, 0.99])
    if not 0.5 * near_high <= -near_low <= 2 * near_high:  # a clear answer
        return -near_low > near_high
    votes = [np.median(border) > otsu(torch.from_numpy(x)), middle - low > high - middle, -near_low > near_high]
    return sum(map(bool, votes)) >= 2


def ink_mask(ink):
    """Where the ink is: Otsu's threshold on the ink map, none if nothing stands out enough."""
    t = otsu(torch.from_numpy(ink))
    return ink > max(t, MIN_CONTRAST)
