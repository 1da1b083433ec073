"""The lesson's pictures: TensorBoard's Images tab (board.py) and the PNG files of test.py --report.
reading/pictures.py draws the pages and handwriting read, inside/pictures.py the attribution maps, with
this file's font and grid of digits.

Every picture of digits is drawn with Pillow alone, straight into RGB arrays, a few milliseconds each:
matplotlib would cost more to import than all of TensorBoard's pictures of a run cost to draw. It is left
to report.py's plotted curves, which are plots with axes, not pictures of digits.
"""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lab.data import MEAN, STD

MISTAKES_SHOWN = 48  # the grid's size: 4 rows of 12


def font(size):
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow 10.1 and newer)
    except TypeError:
        return ImageFont.load_default()


def confusion_picture(cm):
    """The confusion matrix as an RGB array: rows true digit, columns predicted, counts written in.

    Shaded on a log scale, or the diagonal (thousands) would leave every mistake (a few) white.
    """
    cell, left, top = 34, 44, 40
    img = Image.new("RGB", (left + 10 * cell + 8, top + 10 * cell + 8), "white")
    draw, small = ImageDraw.Draw(img), font(11)
    shade = (cm.double().log1p() / max(cm.double().log1p().max().item(), 1e-9)).tolist()
    for t in range(10):
        draw.text((left - 14, top + t * cell + cell // 2), str(t), fill="black", font=small, anchor="mm")
        draw.text((left + t * cell + cell // 2, top - 10), str(t), fill="black", font=small, anchor="mm")
        for p in range(10):
            s = shade[t][p]
            colour = (
                (int(255 - 200 * s), int(255 - 150 * s), 255)
                if t == p
                else (255, int(255 - 180 * s), int(255 - 180 * s))
            )
            x, y = left + p * cell, top + t * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(225, 225, 225))
            if cm[t, p]:
                draw.text(
                    (x + cell // 2, y + cell // 2),
                    str(int(cm[t, p])),
                    font=small,
                    anchor="mm",
                    fill="white" if s > 0.6 and t == p else "black",
                )
    draw.text((left, 4), "predicted digit", fill="black", font=small)  # Pillow's own font has no arrows
    draw.text((2, top - 24), "true", fill="black", font=small)
    return np.asarray(img)


def digits_picture(images, captions, title, colours=None, cols=12):
    """A grid of digits, each under its caption: images the normalised [N, 1, 28, 28] inputs (any device),
    captions one short text each, colours one RGB triple each (default black)."""
    pixels = (images.float() * STD + MEAN).clamp(0, 1).mul(255).byte().cpu()
    tile, gap, caption = 56, 10, 15
    cols = max(1, min(cols, len(captions)))
    rows = max(1, -(-len(captions) // cols))
    img = Image.new("RGB", (max(cols * (tile + gap) + gap, 420), 22 + rows * (tile + caption + 4)), (245, 245, 245))
    draw, small = ImageDraw.Draw(img), font(11)
    draw.text((gap, 4), title, fill="black", font=small)
    for k, text in enumerate(captions):
        x, y = gap + (k % cols) * (tile + gap), 22 + (k // cols) * (tile + caption + 4)
        draw.text((x - 2, y), text, fill=colours[k] if colours else "black", font=small)
        digit = Image.fromarray(pixels[k, 0].numpy()).resize((tile, tile), Image.Resampling.NEAREST)
        img.paste(digit, (x, y + caption))
    return np.asarray(img)


def mistakes_picture(images, labels, result):
    """The wrongly read digits, most confident mistake first, each captioned 'true as predicted, confidence'.

    images: the normalised [N, 1, 28, 28] inputs; labels [N]; result: what metrics.evaluate returned.
    """
    labels, pred, prob = labels.cpu(), result["predictions"], result["probabilities"]
    every = (pred != labels).nonzero().flatten()
    confidence = prob[every].max(1).values
    order = confidence.argsort(descending=True)[:MISTAKES_SHOWN]
    wrong, confidence = every[order], confidence[order]
    shown = f"; the {len(wrong)} most confident shown" if len(wrong) < len(every) else ""
    return digits_picture(
        images[wrong.to(images.device)],
        [f"{int(labels[i])} as {int(pred[i])} {100 * c:.0f}%" for i, c in zip(wrong.tolist(), confidence.tolist())],
        f"{len(every)} of {len(labels)} read wrong{shown} (true digit as read, confidence)",
        [(180, 0, 0)] * len(wrong),
    )


def predictions_picture(images, labels, result, n=48, seed=0):
    """n test digits drawn at random, right and wrong alike, each captioned with what the net read:
    green 'read 7 (99%)' when right, red 'read 1, is 7' when wrong."""
    labels, pred, prob = labels.cpu(), result["predictions"], result["probabilities"]
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    right = pred[pick] == labels[pick]
    captions = [
        f"read {int(pred[i])} {100 * prob[i].max():.0f}%" if ok else f"read {int(pred[i])}, is {int(labels[i])}"
        for i, ok in zip(pick.tolist(), right.tolist())
    ]
    return digits_picture(
        images[pick.to(images.device)],
        captions,
        f"{len(pick)} test digits at random: {int(right.sum())} read right (green), "
        f"{int((~right).sum())} wrong (red: what it read, what it is)",
        [(0, 120, 0) if ok else (190, 0, 0) for ok in right.tolist()],
    )


def samples_picture(images, labels, n=48):
    """The first n images of a set with their labels: what the network is shown."""
    return digits_picture(
        images[:n],
        [f"label {int(y)}" for y in labels[:n].tolist()],
        f"The first {min(n, len(labels))} training images and their labels",
    )


def stack_pictures(pictures, gap=8):
    """Pictures (Pillow images or RGB arrays) one above the other, on the pictures' light grey."""
    pictures = [p if isinstance(p, Image.Image) else Image.fromarray(p) for p in pictures]
    img = Image.new("RGB", (max(p.width for p in pictures), sum(p.height + gap for p in pictures)), (245, 245, 245))
    y = 0
    for p in pictures:
        img.paste(p.convert("RGB"), (0, y))
        y += p.height + gap
    return img


def reliability_picture(calibration, title="reliability"):
    """A reliability diagram (lab/calibration.py's bins): for each range of confidence, a bar as high as the
    share of its images read right, over the diagonal where a calibrated net's bars would end. A bar under
    the diagonal: the net is surer than it is right; over it: it is right more often than it says."""
    size, left, top, bottom = 300, 46, 46, 40
    img = Image.new("RGB", (left + size + 20, top + size + bottom), "white")
    draw, small = ImageDraw.Draw(img), font(11)
    y_of = lambda v: top + size - v * size  # noqa: E731  (0..1 upwards)
    for low, high, count, _, accuracy in calibration["bins"]:
        if count:
            x0, x1 = left + low * size, left + high * size
            draw.rectangle([x0 + 1, y_of(accuracy), x1 - 1, y_of(0)], fill=(90, 130, 220), outline=(60, 90, 170))
    draw.line([left, y_of(0), left + size, y_of(1)], fill=(200, 0, 0), width=2)  # where calibrated bars end
    draw.rectangle([left, top, left + size, top + size], outline="black")
    for v in (0, 0.5, 1):
        draw.text((left - 6, y_of(v)), f"{v:g}", fill="black", font=small, anchor="rm")
        draw.text((left + v * size, top + size + 10), f"{v:g}", fill="black", font=small, anchor="mm")
    draw.text(
        (left + size / 2, top + size + 26), "confidence (largest probability)", fill="black", font=small, anchor="mm"
    )
    draw.text(
        (4, 6),
        f"{title}: ECE {100 * calibration['ece']:.2f}%, mean confidence "
        f"{100 * calibration['confidence']:.2f}%, right {100 * calibration['accuracy']:.2f}%",
        fill="black",
        font=small,
    )
    draw.text((4, top - 18), "share read right", fill="black", font=small)
    return np.asarray(img)
