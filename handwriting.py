"""Make a test set of handwritten digits that are not MNIST's: the ten digits in 27 handwriting fonts.

    python handwriting.py                        # handwriting/0 ... handwriting/9, 8 images per digit and font
    python test.py --images handwriting          # how well the net reads them, beside MNIST's test set
    python handwriting.py --fonts caveat kalam --per-digit 3 --out few   # a few fonts only
    python handwriting.py --grid 8 --out coarse  # every digit on an 8x8 grid, as low-resolution scans keep them

MNIST's test set comes from the same writers and the same scanner as its training set: 99% there says
little about your own hand. This set is drawn in Google's handwriting fonts (open source, under the
SIL Open Font License), fetched once from the npm registry as the @fontsource packages and kept in
--font-cache. Each image is one digit as a phone would photograph it: its own size, slant, rotation
and pen width, ink on tinted paper lit unevenly, some blurred, some at a low resolution (a small
digit photographed from afar, enlarged), some saved as JPEG. Styles MNIST has few of come with the
fonts: the crossed 7, the open 4, the 1 with a flag, the 9 with a straight stem. With --grid N, each
digit is instead fitted into a square of 4N pixels, its ink counted in blocks of 4x4 (N x N cells of
17 grey levels), and enlarged again: the coarse digits of old scanners and small digit data sets.

Everything is drawn from --seed: the same command makes the same files on any machine. Nothing of
the fonts is kept in the lab's repository, only this script (docs/results.md: how the nets read it).
"""

import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from lab.cli import UserError, make_parser, non_negative_int, positive_int, run_script, shell_join
from lab.files import make_folder, write_atomic

VERSION = "5.3.0"  # of every @fontsource package below: the registry keeps each version as it was published
FONTS = [
    "caveat",
    "indie-flower",
    "kalam",
    "patrick-hand",
    "gochi-hand",
    "homemade-apple",
    "shadows-into-light",
    "reenie-beanie",
    "nanum-pen-script",
    "long-cang",
    "zhi-mang-xing",
    "architects-daughter",
    "covered-by-your-grace",
    "rock-salt",
    "permanent-marker",
    "gloria-hallelujah",
    "schoolbell",
    "annie-use-your-telescope",
    "sue-ellen-francisco",
    "swanky-and-moo-moo",
    "handlee",
    "delius",
    "neucha",
    "caveat-brush",
    "itim",
    "sriracha",
    "the-girl-next-door",
]
REGISTRY = "https://registry.npmjs.org"


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    a("--out", default="handwriting", metavar="DIR", help="where the set goes, DIR/0 ... DIR/9 (default: handwriting)")
    a(
        "--fonts",
        nargs="+",
        default=FONTS,
        choices=FONTS,
        metavar="FONT",
        help=f"the fonts to draw with (default: all {len(FONTS)}: {', '.join(FONTS)})",
    )
    a("--per-digit", type=positive_int, default=8, metavar="N", help="images of each digit in each font (default: 8)")
    a("--seed", type=non_negative_int, default=0, metavar="N", help="draws every variation (default: 0)")
    a(
        "--grid",
        type=positive_int,
        default=None,
        metavar="N",
        help="instead of photos, each digit counted on an N x N grid and enlarged 8 times, e.g. 8 (default: photos)",
    )
    a(
        "--font-cache",
        default=".fonts",
        metavar="DIR",
        help="where the fonts are kept once fetched; offline, put the .woff2 files there (default: .fonts)",
    )
    return p


# ---------------------------------------------------------------- the fonts


def font_file(name, cache):
    """The font's regular Latin .woff2 in `cache`, fetched from the npm registry the first time."""
    path = Path(cache) / f"{name}-latin-400-normal.woff2"
    if path.is_file():
        return path
    url = f"{REGISTRY}/@fontsource/{name}/-/{name}-{VERSION}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            package = r.read()
        with tarfile.open(fileobj=io.BytesIO(package)) as tar:  # read by its one known name: nothing is unpacked
            font = tar.extractfile(f"package/files/{path.name}").read()
    except (OSError, urllib.error.URLError, tarfile.TarError, KeyError, AttributeError) as e:
        raise UserError(
            f"could not fetch the font {name} from {url} ({str(e)[:80] or type(e).__name__}); "
            f"offline, put {path.name} into {cache}/"
        ) from None
    make_folder(cache, "--font-cache")
    write_atomic(path, font)
    return path


def load_font(path, size):
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as e:
        raise UserError(f"{path} is not a font Pillow can read ({e}): delete it to fetch it again") from None


# ---------------------------------------------------------------- one digit, as a phone photographs it


def glyph(font_path, digit, rng, tags):
    """The digit in black on white, alone, at its size, pen width, slant and rotation: an 'L' image.
    What sets it apart is added to `tags` (a thick or a fine pen)."""
    height = int(rng.integers(60, 160))  # pixels from the top of the digit to its foot, about
    font = load_font(font_path, height * 4 // 3)
    pen = int(rng.integers(0, 1 + height // 35))  # extra pen width, on each side of the font's stroke
    if pen >= 2:
        tags.append("thick")
    box = font.getbbox(str(digit), stroke_width=pen)
    w, h = box[2] - box[0], box[3] - box[1]
    img = Image.new("L", (w + 4 * height, h + 4 * height), 255)
    ImageDraw.Draw(img).text(
        (2 * height - box[0], 2 * height - box[1]), str(digit), font=font, fill=0, stroke_width=pen, stroke_fill=0
    )
    if rng.random() < 0.25:  # a finer pen than the font's
        img = img.filter(ImageFilter.MaxFilter(3))
        tags.append("fine")
    slant, angle = rng.uniform(-0.3, 0.3), rng.uniform(-8, 8)
    img = img.transform(
        img.size,
        Image.Transform.AFFINE,
        (1, slant, -slant * img.height / 2, 0, 1, 0),
        resample=Image.Resampling.BICUBIC,
        fillcolor=255,
    )
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    return img.crop(ImageOps.invert(img).getbbox() or (0, 0, img.width, img.height))  # the ink and no more


def photo(ink, rng, tags):
    """Ink (an 'L' image, black on white) on a sheet of paper, lit, photographed: an RGB image."""
    w, h = ink.size
    margin_x, margin_y = (int(rng.uniform(0.3, 1.0) * max(w, h)) for _ in range(2))
    W, H = w + 2 * margin_x, h + 2 * margin_y
    left, top = int(rng.integers(0, 2 * margin_x + 1)), int(rng.integers(0, 2 * margin_y + 1))
    page = np.ones((H, W), np.float32)
    page[top : top + h, left : left + w] = np.asarray(ink, np.float32) / 255
    darkness = 1 - page  # 1 where the pen was
    # paper: tinted, lit from one side (brightness falling by up to a fifth across the page), a little grain
    ys, xs = np.mgrid[0:H, 0:W] / max(H, W)
    angle = rng.uniform(0, 2 * np.pi)
    slope = np.cos(angle) * xs + np.sin(angle) * ys
    light = 1 - rng.uniform(0, 0.2) * (slope - slope.min()) / max(np.ptp(slope), 1e-6)
    paper = rng.uniform(0.82, 0.98) * np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.86, 1.0)])
    ink_rgb = rng.choice([[0.1, 0.1, 0.12], [0.12, 0.15, 0.4], [0.3, 0.3, 0.32], [0.05, 0.05, 0.05]])
    strength = rng.uniform(0.75, 1.0)  # a pencil or a worn pen leaves less
    a = (darkness * strength)[..., None]
    rgb = (paper * (1 - a) + np.array(ink_rgb) * a) * light[..., None] + rng.normal(0, 0.01, (H, W, 1))
    img = Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
        tags.append("blurred")
    if (
        rng.random() < 0.25
    ):  # far away, or an old scan: the digit 7 to 16 pixels tall, enlarged again, smoothly or blocky
        tags.append("small")
        small = rng.uniform(7, 16) / h
        img = img.resize((max(2, round(W * small)), max(2, round(H * small))), Image.Resampling.BOX)
        img = img.resize((W, H), Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BICUBIC)
    return img


def coarse(ink, n):
    """Ink (black on white) fitted into a 4n x 4n square, its ink counted in 4x4 blocks, enlarged 8 times:
    an 'L' image."""
    w, h = ink.size
    scale = 4 * n / max(w, h)
    ink = ink.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    square = Image.new("L", (4 * n, 4 * n), 255)
    square.paste(ink, ((4 * n - ink.width) // 2, (4 * n - ink.height) // 2))
    counts = (np.asarray(square) < 128).reshape(n, 4, n, 4).sum(axis=(1, 3))  # 0..16 pen pixels a cell
    return Image.fromarray((255 - counts * 255 / 16).astype(np.uint8)).resize((8 * n, 8 * n), Image.Resampling.NEAREST)


def encode(img, rng):
    """The photo as a file: PNG, or JPEG at a phone's quality. Returns (bytes, suffix)."""
    out = io.BytesIO()
    if rng.random() < 0.5:  # (the suffix says which)
        img.save(out, "JPEG", quality=int(rng.integers(60, 95)))
        return out.getvalue(), ".jpg"
    img.save(out, "PNG")
    return out.getvalue(), ".png"


def main(argv=None):
    args = parser().parse_args(argv)
    paths = {name: font_file(name, args.font_cache) for name in args.fonts}  # first: nothing is written without them
    for digit in range(10):
        make_folder(Path(args.out) / str(digit), "--out")
    written = 0
    for f, (name, path) in enumerate(paths.items()):
        for digit in range(10):
            for k in range(args.per_digit):
                # each image from its own seed: the same file, whichever fonts or counts are asked for
                rng = np.random.default_rng([args.seed, FONTS.index(name), digit, k])
                tags = []  # what sets this image apart, in its name: caveat-3-thick-small.png
                ink = glyph(path, digit, rng, tags)
                if args.grid:
                    out = io.BytesIO()
                    coarse(ink, args.grid).save(out, "PNG")
                    data, suffix = out.getvalue(), ".png"
                else:
                    data, suffix = encode(photo(ink, rng, tags), rng)
                write_atomic(Path(args.out) / str(digit) / ("-".join([name, str(k), *tags]) + suffix), data)
                written += 1
        print(f"{f + 1}/{len(paths)} {name}", flush=True)
    print(
        f"Wrote {written:,} images of {len(paths)} fonts into {args.out}/0 ... {args.out}/9; "
        f"read them with: {shell_join(['python', 'test.py', '--images', args.out])}"
    )
    return 0


if __name__ == "__main__":
    run_script(main)
