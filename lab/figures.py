"""The lab's pictures, drawn once and used everywhere: TensorBoard's Images tab (board.py), the
PNG files of test.py --report and predict.py --explain, and predict.py --show's digits and pages.

Drawn with Pillow straight into RGB arrays, a few milliseconds each: matplotlib would cost more
to import than all of TensorBoard's pictures of a run cost to draw. Every picture of digits is drawn
here, with Pillow alone (one library, one way to show an image: as_rgb); matplotlib is left to
report.py's plotted curves, which are plots with axes, not pictures of digits.
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
            colour = (int(255 - 200 * s), int(255 - 150 * s), 255) if t == p else (255, int(255 - 180 * s), int(255 - 180 * s))
            x, y = left + p * cell, top + t * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(225, 225, 225))
            if cm[t, p]:
                draw.text((x + cell // 2, y + cell // 2), str(int(cm[t, p])), font=small, anchor="mm",
                          fill="white" if s > 0.6 and t == p else "black")
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
    return digits_picture(images[wrong.to(images.device)],
                          [f"{int(labels[i])} as {int(pred[i])} {100 * c:.0f}%" for i, c in zip(wrong.tolist(), confidence.tolist())],
                          f"{len(every)} of {len(labels)} read wrong{shown} (true digit as read, confidence)",
                          [(180, 0, 0)] * len(wrong))


def predictions_picture(images, labels, result, n=48, seed=0):
    """n test digits drawn at random, right and wrong alike, each captioned with what the net read:
    green 'read 7 (99%)' when right, red 'read 1, is 7' when wrong."""
    labels, pred, prob = labels.cpu(), result["predictions"], result["probabilities"]
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    right = pred[pick] == labels[pick]
    captions = [f"read {int(pred[i])} {100 * prob[i].max():.0f}%" if ok else f"read {int(pred[i])}, is {int(labels[i])}"
                for i, ok in zip(pick.tolist(), right.tolist())]
    return digits_picture(images[pick.to(images.device)], captions,
                          f"{len(pick)} test digits at random: {int(right.sum())} read right (green), "
                          f"{int((~right).sum())} wrong (red: what it read, what it is)",
                          [(0, 120, 0) if ok else (190, 0, 0) for ok in right.tolist()])


def samples_picture(images, labels, n=48):
    """The first n images of a set with their labels: what the network is shown."""
    return digits_picture(images[:n], [f"label {int(y)}" for y in labels[:n].tolist()],
                          f"The first {min(n, len(labels))} training images and their labels")


# ---------------------------------------------------------------- attribution maps (inside/explain.py)

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


# ---------------------------------------------------------------- a page of digits (predict.py --show, reading/pages.py)

LINE_COLOURS = [(214, 39, 40), (31, 100, 200), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def page_picture(image, page, name="", width=900):
    """A page as read: the photo with each digit's box and reading (one colour per line), and beneath it each
    digit as the 28x28 image the net received, with its reading and confidence, line by line."""
    photo = as_rgb(image)
    scale = min(1.0, width / photo.width, 700 / photo.height)
    photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))))
    tile, gap, label = 42, 6, 14
    per_row = max(1, (max(photo.width, 420) - gap) // (tile + gap))
    rows = sum(-(-sum(d.line == n for d in page.digits) // per_row) for n in range(len(page.lines)))
    notes = page.notes[:6]
    img = Image.new("RGB", (max(photo.width, 420) + 2 * gap, 22 + photo.height + gap + rows * (tile + label + gap)
                            + 14 * len(notes) + gap), (245, 245, 245))
    draw, small = ImageDraw.Draw(img), font(11)
    draw.text((gap, 4), f"{name}  read: {' '.join(page.lines)}"[:140], fill="black", font=small)
    img.paste(photo, (gap, 22))
    for d in page.digits:
        colour = LINE_COLOURS[d.line % len(LINE_COLOURS)]
        l, t, r, b = gap + d.box[0] * scale, 22 + d.box[1] * scale, gap + d.box[2] * scale, 22 + d.box[3] * scale
        draw.rectangle([l, t, r, b], outline=colour, width=2)
        draw.text((l + 2, t + 1), str(d.digit), fill=colour, font=font(14))
    y = 22 + photo.height + gap
    for n in range(len(page.lines)):
        line = [d for d in page.digits if d.line == n]
        for k, d in enumerate(line):
            if k and k % per_row == 0:
                y += tile + label + gap
            x = gap + (k % per_row) * (tile + gap)
            draw.text((x, y), f"{d.digit} · {100 * float(d.probabilities.max()):.0f}%",
                      fill=LINE_COLOURS[n % len(LINE_COLOURS)], font=small)
            pixels = (d.pixels.clamp(0, 1) * 255).round().byte().numpy()
            img.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST), (x, y + label))
        y += tile + label + gap
    for k, note in enumerate(notes):
        draw.text((gap, y + 14 * k), note[:150], fill=(160, 0, 0), font=small)
    return img


def stack_pictures(pictures, gap=8):
    """Pictures (Pillow images or RGB arrays) one above the other, on the pictures' light grey."""
    pictures = [p if isinstance(p, Image.Image) else Image.fromarray(p) for p in pictures]
    img = Image.new("RGB", (max(p.width for p in pictures), sum(p.height + gap for p in pictures)), (245, 245, 245))
    y = 0
    for p in pictures:
        img.paste(p.convert("RGB"), (0, y))
        y += p.height + gap
    return img


def as_rgb(image):
    """Any Pillow image as the RGB picture of it: transparent pixels on white paper, 16-bit and float grey
    (which RGB cannot hold) scaled to their brightest pixel."""
    if image.mode.startswith("I") or image.mode == "F":
        grey = np.asarray(image, np.float32)
        return Image.fromarray((255 * grey / max(float(grey.max()), 1e-6)).clip(0, 255).astype(np.uint8)).convert("RGB")
    paper = Image.new("RGBA", image.size, "white")
    return Image.alpha_composite(paper, image.convert("RGBA")).convert("RGB")


def written_picture(items, title, tile=56, cols=6, colour=(180, 0, 0)):
    """Digits, each as it was written (the image file, fitted into a tile) beside the 28x28 image it became,
    under its caption in `colour`: items are (original Pillow image, 28x28 tensor in 0..1, caption). test.py
    --images shows its mistakes so, predict.py --show the digits it read."""
    gap, caption, small = 10, 15, font(11)
    cols = max(1, min(cols, len(items)))
    rows = max(1, -(-len(items) // cols))
    width = max(cols * (2 * tile + 2 + gap) + gap, int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=small)) + 2 * gap)
    img = Image.new("RGB", (width, 22 + rows * (tile + caption + 6)), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    draw.text((gap, 4), title, fill="black", font=small)
    for k, (original, seen, text) in enumerate(items):
        x, y = gap + (k % cols) * (2 * tile + 2 + gap), 22 + (k // cols) * (tile + caption + 6)
        draw.text((x, y), text, fill=colour, font=small)
        written = as_rgb(original)
        written.thumbnail((tile, tile))
        img.paste(Image.new("RGB", (tile, tile), "white"), (x, y + caption))
        img.paste(written, (x + (tile - written.width) // 2, y + caption + (tile - written.height) // 2))
        pixels = (seen.clamp(0, 1) * 255).round().byte().numpy()
        img.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST), (x + tile + 2, y + caption))
    return np.asarray(img)


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
    draw.text((left + size / 2, top + size + 26), "confidence (largest probability)", fill="black", font=small,
              anchor="mm")
    draw.text((4, 6), f"{title}: ECE {100 * calibration['ece']:.2f}%, mean confidence "
              f"{100 * calibration['confidence']:.2f}%, right {100 * calibration['accuracy']:.2f}%",
              fill="black", font=small)
    draw.text((4, top - 18), "share read right", fill="black", font=small)
    return np.asarray(img)
