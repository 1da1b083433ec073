"""What was read, drawn: a page with each digit's box and reading (predict.py --show), and digits as they
were written beside the 28x28 images they became (predict.py --show, test.py --images). With Pillow, as
every picture of digits is (lab/figures.py says why).
"""

import numpy as np
from PIL import Image, ImageDraw

from lab.figures import font

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
    img = Image.new(
        "RGB",
        (
            max(photo.width, 420) + 2 * gap,
            22 + photo.height + gap + rows * (tile + label + gap) + 14 * len(notes) + gap,
        ),
        (245, 245, 245),
    )
    draw, small = ImageDraw.Draw(img), font(11)
    draw.text((gap, 4), f"{name}  read: {' '.join(page.lines)}"[:140], fill="black", font=small)
    img.paste(photo, (gap, 22))
    for d in page.digits:
        colour = LINE_COLOURS[d.line % len(LINE_COLOURS)]
        left = gap + d.box[0] * scale
        top = 22 + d.box[1] * scale
        right = gap + d.box[2] * scale
        bottom = 22 + d.box[3] * scale
        draw.rectangle([left, top, right, bottom], outline=colour, width=2)
        draw.text((left + 2, top + 1), str(d.digit), fill=colour, font=font(14))
    y = 22 + photo.height + gap
    for n in range(len(page.lines)):
        line = [d for d in page.digits if d.line == n]
        for k, d in enumerate(line):
            if k and k % per_row == 0:
                y += tile + label + gap
            x = gap + (k % per_row) * (tile + gap)
            draw.text(
                (x, y),
                f"{d.digit} · {100 * float(d.probabilities.max()):.0f}%",
                fill=LINE_COLOURS[n % len(LINE_COLOURS)],
                font=small,
            )
            pixels = (d.pixels.clamp(0, 1) * 255).round().byte().numpy()
            img.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST), (x, y + label))
        y += tile + label + gap
    for k, note in enumerate(notes):
        draw.text((gap, y + 14 * k), note[:150], fill=(160, 0, 0), font=small)
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
    width = max(
        cols * (2 * tile + 2 + gap) + gap,
        int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=small)) + 2 * gap,
    )
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
