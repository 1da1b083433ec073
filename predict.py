"""Recognise your own handwritten digits with the trained network.

    python predict.py my_digit.png                  # one image
    python predict.py numbers/                      # every image in a folder
    python predict.py a.png b.jpg --topk 3 --json out.json --checkpoint net.pth --device cpu
    python predict.py my_digit.png --show seen.png  # what the net saw, beside the original
    python predict.py my_digit.png --explain why.png  # which pixels made it read that digit
    python predict.py my_digit.png --checkpoint a.pth b.pth c.pth  # an ensemble: the mean of their probabilities
    python predict.py page.jpg --show read.png      # a number, or a page of digits: every one, line by line
    python predict.py page.jpg --save-digits mine/ --expect 0123456789   # each line written as 0 to 9
    python train_reader.py && python predict.py page.jpg   # digits that touch: counted by reader.pth

A photo or a drawing is not an MNIST image: reading/images.py makes it one the way MNIST was made
(docs/predict.md has each step), and --show shows what the network received. An image may hold
several digits: reading/pages.py finds each one, in reading order, and each line's number is printed,
then each digit with its confidence. --save-digits keeps them, checked against --expect, as a
labelled folder that test.py --images evaluates. --explain draws,
over what it received, which pixels raised (red) or lowered (blue) the digit read and the runner-up
(docs/explain.md says how these maps are made).
"""

import sys
from pathlib import Path

import torch
from PIL import Image

from lab import ensemble
from lab.cli import UserError, add_checkpoint_flag, add_device_flag, int_between, make_parser, run_script
from lab.device import pick_device
from lab.figures import stack_pictures
from lab.files import make_folder, png_bytes, save_png, write_json, write_new
from reading.images import ImageProblem
from reading.pages import classifier, read
from reading.pictures import page_picture, written_picture
from reading.reader import add_reader_flag, reader_from_flag

SHOW_MAX = 64  # --show draws at most this many images


def image_files(inputs):
    """Expand folders into their image files (sorted); yield (name, path) pairs, files in given order."""
    known = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in known and not f.name.startswith(".")
            )
            if not files:
                yield str(p), None  # reported as a problem
            for f in files:
                yield str(f), f
        else:
            yield str(p), p


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    a("images", nargs="+", help="image files or folders of images (PNG, JPEG, BMP, GIF, WebP, ...)")
    add_checkpoint_flag(p, several=True)
    a("--topk", type=int_between(1, 10), default=3, help="how many likeliest digits to list, 1 to 10 (default: 3)")
    a("--json", metavar="FILE", default=None, help="also write the predictions as JSON to FILE")
    a(
        "--show",
        metavar="FILE",
        default=None,
        help=f"save a PNG with each original beside the 28x28 image the net saw (first {SHOW_MAX})",
    )
    a(
        "--explain",
        metavar="FILE",
        default=None,
        help=f"save a PNG with, for each image (first {SHOW_MAX}), the pixels that made the net read its digit "
        "and those against the runner-up (Integrated Gradients: red raises the score, blue lowers it), "
        "and Grad-CAM for nets with conv layers",
    )
    a(
        "--save-digits",
        metavar="DIR",
        default=None,
        help="save each digit found as a PNG into DIR/<digit>/, labelled by --expect (a folder test.py --images "
        "reads); a line holding another count of digits than --expect says is reported and not saved",
    )
    a(
        "--expect",
        metavar="DIGITS",
        default=None,
        type=expected_digits,
        help="what each line of the page holds, e.g. 0123456789; with --save-digits, the labels",
    )
    add_reader_flag(p)
    add_device_flag(p)
    return p


def expected_digits(text):
    if not text or not all(c in "0123456789" for c in text):
        raise ValueError(text)  # argparse: "invalid expected_digits value"
    return text


def save_show(path, shown, pages=()):
    """shown: list of (name, original PIL image, 28x28 tensor, label text); pages: (name, Page) of the images that
    hold several digits, each drawn with its boxes and readings beneath the single digits. Drawn with Pillow, as
    every picture of digits is (lab/figures.py)."""
    pictures = [page_picture(page.image, page, name) for name, page in pages]
    if shown:
        items = [(original, seen, f"{Path(name).name[:20]}: {label}") for name, original, seen, label in shown]
        pictures.insert(
            0, written_picture(items, "each image beside the 28x28 image the net saw", tile=140, cols=4, colour="black")
        )
    save_png(path, stack_pictures(pictures))


def save_explain(path, model, ckpt, names, seen, probs):
    """The --explain picture: what each image's pixels did for the digit read and against the runner-up."""
    from inside.explain import Explainer, why_items  # here, not at the top: captum's import takes 0.7 s
    from inside.pictures import maps_picture  # (with it: only --explain looks inside)

    n = min(len(seen), SHOW_MAX)
    pixels = torch.stack(seen[:n])
    top_p, top_d = probs[:n].topk(2, dim=1)
    read, runner_up = top_d[:, 0], top_d[:, 1]
    captions = [
        f"{Path(name).name[:24]}: {d} ({100 * p:.0f}%)"
        for name, d, p in zip(names, read.tolist(), top_p[:, 0].tolist())
    ]
    items = why_items(Explainer(model, ckpt), pixels, read, runner_up, captions)
    save_png(
        path,
        maps_picture(
            items,
            "red: raises the digit's score, blue: lowers it "
            "(Integrated Gradients from a blank image; Grad-CAM: the last conv block)",
        ),
    )


def page_lines(name, page, width):
    """What predict.py prints for an image holding several digits: the numbers read, then each line's
    number and its digits with their confidence, then the notes (digits that touch and were read as one)."""
    out = [
        f"{name:<{width}}  →  {' '.join(page.lines)}   ({len(page.digits)} digits on {len(page.lines)} "
        f"line{'s' if len(page.lines) > 1 else ''})"
    ]
    for n, number in enumerate(page.lines):
        digits = [d for d in page.digits if d.line == n]
        out.append(
            f"    line {n + 1}: {number}   "
            + " · ".join(
                f"{d.digit} {100 * float(d.probabilities.max()):.1f}%" + ("ʳ" if d.by_reader else "") for d in digits
            )
        )
    if any(d.by_reader for d in page.digits):
        out.append("    ʳ: digits that touch, counted and read by the reader of touching digits (train_reader.py)")
    return out + [f"    note: {note}" for note in page.notes]


def page_json(name, page, topk):
    """A page in --json: the numbers read, and each digit's box (left, top, right, bottom, in the image's
    pixels), line (1 = the top one), reading and probabilities."""
    digits = []
    for d in page.digits:
        p, k = d.probabilities.topk(topk)
        digits.append(
            {
                "box": list(d.box),
                "line": d.line + 1,
                "prediction": d.digit,
                "probability": float(p[0]),
                "probabilities": d.probabilities.tolist(),
                "read_by": "reader" if d.by_reader else "net",
                "topk": [{"digit": dd, "probability": pp} for dd, pp in zip(k.tolist(), p.tolist())],
            }
        )
    return {"file": name, "lines": page.lines, "digits": digits, "notes": page.notes}


def save_digits(folder, name, page, expect):
    """--expect and --save-digits: each line must hold len(expect) digits; those of a line that does are
    saved (when `folder` is given) as PNG files in folder/<its digit by expect>/, never over a file there,
    each exactly what preprocess() read. Returns (saved, read otherwise than expected, lines refused)."""
    saved = 0
    otherwise = 0
    refused = 0
    stem = Path(name).stem[:40] or "image"
    for n in range(len(page.lines)):
        digits = [d for d in page.digits if d.line == n]
        where = f"{name}: line {n + 1}" if len(page.lines) > 1 or len(digits) > 1 else name
        if len(digits) != len(expect):
            print(f"{where}: {len(digits)} digits found, {len(expect)} expected: none of them saved", file=sys.stderr)
            refused += 1
            continue
        for k, (d, label) in enumerate(zip(digits, expect)):
            otherwise += d.digit != int(label)
            if folder:
                make_folder(Path(folder) / label, "--save-digits")
                write_new(Path(folder) / label, f"{stem}-{n + 1}-{k + 1}", png_bytes(d.crop))
                saved += 1
    return saved, otherwise, refused


def main(argv=None):
    args = parser().parse_args(argv)
    if args.save_digits and not args.expect:
        raise UserError("--save-digits needs --expect DIGITS: what each line holds, e.g. --expect 0123456789")
    model, ckpt = ensemble.load(args.checkpoint)  # first: without a checkpoint nothing else matters
    reader = reader_from_flag(args.reader)
    device = pick_device(args.device)
    model = model.to(device)
    if args.save_digits:
        make_folder(args.save_digits, "--save-digits")  # before the work, so that a bad folder fails at once

    pages, failed = read_files(args.images, classifier(model, ckpt, device), reader)
    entries = say_pages(pages, args.topk)
    if args.expect:
        failed += check_and_save(args, pages)
    if args.json:
        out = {
            "checkpoint": args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint,
            "model": ckpt.get("model"),
            "predictions": entries,
            "failed": failed,
        }
        write_json(args.json, out)
    if args.show and pages:
        show_pages(args.show, pages, entries)
    if args.explain:
        explain_digits(args.explain, model, ckpt, pages)
    return 1 if failed else 0


def read_files(images, classify, reader):
    """Each file (or folder's files) read as a page: [(name, Page)], and how many could not be, each said why."""
    pages = []
    failed = 0
    for name, path in image_files(images):
        try:
            if path is None:
                raise ImageProblem("no image files in this folder")
            pages.append((name, read(path, classify, reader)))
        except ImageProblem as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed += 1
    return pages, failed


def one_digit(pages):
    """The pages that hold one digit alone: their positions in `pages`."""
    return [k for k, (_, page) in enumerate(pages) if len(page.digits) == 1]


def say_pages(pages, topk):
    """Prints what each page holds, in order, and returns each page's entry of --json. One digit alone is a page of
    one digit: printed on one line, as it always was, with its `topk` likeliest digits; other pages line by line."""
    single = one_digit(pages)
    width = max((len(name) for name, _ in pages), default=0)
    printed = {}
    entries = {}
    if single:
        probs = torch.stack([pages[k][1].digits[0].probabilities for k in single])
        top_p, top_d = probs.topk(topk, dim=1)  # every one-digit page at once
        for k, p, d in zip(single, top_p.tolist(), top_d.tolist()):
            name = pages[k][0]
            line = f"{name:<{width}}  →  {d[0]}  ({100 * p[0]:.1f}%)"
            if topk > 1:
                line += f"   top {topk}: " + " · ".join(f"{dd} {100 * pp:.1f}%" for dd, pp in zip(d, p))
            printed[k] = [line]
            entries[k] = {
                "file": name,
                "prediction": d[0],
                "probability": p[0],
                "topk": [{"digit": dd, "probability": pp} for dd, pp in zip(d, p)],
            }
    for k, (name, page) in enumerate(pages):
        if k not in printed:
            printed[k], entries[k] = page_lines(name, page, width), page_json(name, page, topk)
        print("\n".join(printed[k]))
    return [entries[k] for k in range(len(pages))]


def check_and_save(args, pages):
    """--expect (and --save-digits): every image's lines checked against what they should hold, and saved.
    Returns how many lines were refused: each one counts as a failure in the exit status."""
    saved = 0
    otherwise = 0
    refused = 0
    for name, page in pages:
        s, o, r = save_digits(args.save_digits, name, page, args.expect)
        saved += s
        otherwise += o
        refused += r
    if args.save_digits:
        print(
            f"Saved {saved} digits into {args.save_digits}/<digit>/"
            + (f"; {otherwise} of them the net reads as another digit than expected" if otherwise else "")
        )
    elif otherwise:
        print(f"{otherwise} digits the net reads as another digit than expected")
    return refused


def show_pages(path, pages, entries):
    """--show: each one-digit page beside what the net saw of it, then the other pages as read; SHOW_MAX of each."""
    shown = []
    for k in one_digit(pages)[:SHOW_MAX]:
        name, page = pages[k]
        caption = f"{entries[k]['prediction']} ({100 * entries[k]['probability']:.0f}%)"
        shown.append((name, page.image, page.digits[0].pixels, caption))
    save_show(path, shown, [(name, page) for name, page in pages if len(page.digits) > 1][:SHOW_MAX])
    print(f"Wrote {path}" + (f" (the first {SHOW_MAX} images)" if len(pages) > SHOW_MAX else ""))


def explain_digits(path, model, ckpt, pages):
    """--explain: why the net read each one-digit page's digit as it did; nothing when there is none."""
    single = one_digit(pages)
    if not single:
        return
    names = [pages[k][0] for k in single]
    seen = [pages[k][1].digits[0].pixels for k in single]
    probs = torch.stack([pages[k][1].digits[0].probabilities for k in single])
    save_explain(path, model, ckpt, names, seen, probs)
    print(f"Wrote {path}" + (f" (the first {SHOW_MAX} images)" if len(single) > SHOW_MAX else ""))


if __name__ == "__main__":
    run_script(main)
