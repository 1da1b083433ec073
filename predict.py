"""Recognise your own handwritten digits with the trained network.

    python predict.py my_digit.png                  # one image
    python predict.py numbers/                      # every image in a folder
    python predict.py a.png b.jpg --topk 3 --json out.json --checkpoint net.pth --device cpu
    python predict.py my_digit.png --show seen.png  # what the net saw, beside the original
    python predict.py my_digit.png --explain why.png  # which pixels made it read that digit
    python predict.py my_digit.png --checkpoint a.pth b.pth c.pth  # an ensemble: the mean of their probabilities

A photo or a drawing is not an MNIST image: lab/images.py makes it one the way MNIST was made
(docs/predict.md has each step), and --show shows what the network received. --explain draws,
over what it received, which pixels raised (red) or lowered (blue) the digit read and the runner-up
(docs/explain.md says how these maps are made).
"""
import sys
from pathlib import Path

import torch
from PIL import Image

from lab import ensemble
from lab.cli import add_checkpoint_flag, add_device_flag, int_between, make_parser, run_script
from lab.device import pick_device
from lab.figures import maps_picture
from lab.files import save_png, write_json
from lab.images import ImageProblem, load_image, net_input, preprocess, to_grey

SHOW_MAX = 64  # --show draws at most this many images


def image_files(inputs):
    """Expand folders into their image files (sorted); yield (name, path) pairs, files in given order."""
    known = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in known and not f.name.startswith("."))
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
    a("--show", metavar="FILE", default=None,
      help=f"save a PNG with each original beside the 28x28 image the net saw (first {SHOW_MAX})")
    a("--explain", metavar="FILE", default=None,
      help=f"save a PNG with, for each image (first {SHOW_MAX}), the pixels that made the net read its digit "
           "and those against the runner-up (Integrated Gradients: red raises the score, blue lowers it), "
           "and Grad-CAM for nets with conv layers")
    add_device_flag(p)
    return p


def save_show(path, shown):
    """shown: list of (name, original PIL image, 28x28 tensor, label text)."""
    from matplotlib.figure import Figure  # here, not at the top: its import takes 0.3 s, and only --show needs it

    pairs_per_row = min(4, len(shown))
    rows = (len(shown) + pairs_per_row - 1) // pairs_per_row
    fig = Figure(figsize=(2.4 * 2 * pairs_per_row, 2.7 * rows))  # a figure alone, no window: pyplot is not needed
    axes = fig.subplots(rows, 2 * pairs_per_row, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, original, seen, label) in enumerate(shown):
        r, c = divmod(i, pairs_per_row)
        try:
            original = original.convert("RGBA")
            original.thumbnail((400, 400))
            axes[r, 2 * c].imshow(original)
        except ValueError:  # modes Pillow cannot turn into RGBA (16-bit, float): show them grey
            axes[r, 2 * c].imshow(to_grey(original).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 2 * c].set_title(Path(name).name[:28], fontsize=8)
        axes[r, 2 * c + 1].imshow(seen.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 2 * c + 1].set_title(f"seen: {label}", fontsize=8)
    fig.tight_layout()
    save_png(path, fig, dpi=100)


def save_explain(path, model, ckpt, names, seen, probs):
    """The --explain picture: what each image's pixels did for the digit read and against the runner-up."""
    from lab.explain import Explainer, why_items  # here, not at the top: captum's import takes 0.7 s

    n = min(len(seen), SHOW_MAX)
    pixels = torch.stack(seen[:n])
    top_p, top_d = probs[:n].topk(2, dim=1)
    read, runner_up = top_d[:, 0], top_d[:, 1]
    captions = [f"{Path(name).name[:24]}: {d} ({100 * p:.0f}%)"
                for name, d, p in zip(names, read.tolist(), top_p[:, 0].tolist())]
    items = why_items(Explainer(model, ckpt), pixels, read, runner_up, captions)
    save_png(path, maps_picture(items, "red: raises the digit's score, blue: lowers it "
                                       "(Integrated Gradients from a blank image; Grad-CAM: the last conv block)"))


def main(argv=None):
    args = parser().parse_args(argv)
    model, ckpt = ensemble.load(args.checkpoint)  # first: without a checkpoint nothing else matters
    device = pick_device(args.device)
    model = model.to(device)

    names, originals, seen, failed = [], [], [], 0
    for name, path in image_files(args.images):
        try:
            if path is None:
                raise ImageProblem("no image files in this folder")
            img = load_image(path)
            x = preprocess(img)
        except ImageProblem as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        names.append(name)
        originals.append(img if len(originals) < SHOW_MAX and args.show else None)
        seen.append(x)

    results = []
    if seen:
        batch = net_input(seen, ckpt).to(device)
        with torch.inference_mode():
            probs = model(batch).float().softmax(1).cpu()
        top_p, top_d = probs.topk(args.topk, dim=1)
        width = max(len(n) for n in names)
        for name, p, d in zip(names, top_p.tolist(), top_d.tolist()):
            line = f"{name:<{width}}  →  {d[0]}  ({100 * p[0]:.1f}%)"
            if args.topk > 1:
                line += f"   top {args.topk}: " + " · ".join(f"{dd} {100 * pp:.1f}%" for dd, pp in zip(d, p))
            print(line)
            results.append({"file": name, "prediction": d[0], "probability": p[0],
                            "topk": [{"digit": dd, "probability": pp} for dd, pp in zip(d, p)]})

    if args.json:
        out = {"checkpoint": args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint,
               "model": ckpt.get("model"), "predictions": results,
               "failed": failed}
        write_json(args.json, out)
    if args.show and results:
        shown = [(r["file"], img, x, f"{r['prediction']} ({100 * r['probability']:.0f}%)")
                 for r, img, x in zip(results, originals, seen) if img is not None]
        save_show(args.show, shown)
        print(f"Wrote {args.show}" + (f" (the first {SHOW_MAX} images)" if len(results) > SHOW_MAX else ""))
    if args.explain and results:
        save_explain(args.explain, model, ckpt, names, seen, probs)
        print(f"Wrote {args.explain}" + (f" (the first {SHOW_MAX} images)" if len(results) > SHOW_MAX else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)
