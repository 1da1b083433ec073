"""Attribution maps drawn over their digits (test.py --explain, predict.py --explain): red where a pixel
raises the digit's score, blue where it lowers it, the colours of draw.py's page. With Pillow, as every
picture of digits is (lab/figures.py says why).
"""

import numpy as np
from PIL import Image, ImageDraw

from lab.figures import font

RAISES, LOWERS = np.array([214.0, 39, 40]), np.array([31.0, 100, 200])  # red, blue: as on draw.py's page


def map_scale(a):
    """The value shown in full colour: the 99th percentile of |map| (the 8th strongest of 784 pixels), so that
    one extreme pixel does not leave all the others pale."""
    return max(float(np.quantile(np.abs(a), 0.99)), 1e-12)


def signed_colours(a, image):
    """A signed 28x28 map over its digit, as RGB: the digit in light grey on white, pixels red where the map
    is positive (they raise the digit's score), blue where negative, stronger the larger |map|."""
    a, image = np.asarray(a, np.float64), np.asarray(image, np.float64)
    base = (255 - 80 * image)[..., None].repeat(3, -1)
    w = np.clip(np.abs(a) / map_scale(a), 0, 1)[..., None]
    colour = np.where(a[..., None] > 0, RAISES, LOWERS)
    return (base * (1 - w) + colour * w).round().astype(np.uint8)


def maps_picture(items, title, per_row=2, tile=84):
    """Digits with their maps: items are (caption, [(label, 28x28 image in 0..1, 28x28 signed map or None)]).

    A tile without a map is the image as the net got it, white on black; with one, signed_colours().
    """
    tiles = max((len(t) for _, t in items), default=1)
    gap, caption, label = 8, 16, 14
    item_w = tiles * (tile + 4) + 16
    rows = max(1, -(-len(items) // per_row))
    img = Image.new("RGB", (gap + per_row * item_w, 26 + rows * (caption + label + tile + gap)), (245, 245, 245))
    draw, small = ImageDraw.Draw(img), font(11)
    draw.text((gap, 5), title, fill="black", font=small)
    for k, (text, row) in enumerate(items):
        x, y = gap + (k % per_row) * item_w, 26 + (k // per_row) * (caption + label + tile + gap)
        draw.text((x, y), text, fill=(140, 0, 0), font=small)
        for j, (name, image, a) in enumerate(row):
            pixels = (np.asarray(image) * 255).round().astype(np.uint8) if a is None else signed_colours(a, image)
            picture = Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST)
            draw.text((x + j * (tile + 4), y + caption), name, fill="black", font=small)
            img.paste(picture, (x + j * (tile + 4), y + caption + label))
    return np.asarray(img)
