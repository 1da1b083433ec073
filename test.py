"""Evaluate a saved checkpoint on the 10,000 MNIST test images, on its own.

    python test.py                                   # net.pth, printed report
    python test.py --json results.json --report report/ --samples 10

It needs only the checkpoint and the data: the network is rebuilt from the
name and options stored in the checkpoint, and the images are normalised with
the mean and std stored there, exactly as in training.
"""
import json
import sys
from pathlib import Path

import torch

from checkpoint import load_checkpoint
from common import (UserError, make_parser, non_negative_int, pick_device, pick_precision, positive_int,
                    run_script, use_all_cores)
from data import load_split, normalize
from metrics import confusion_matrix, evaluate
from net import count_parameters


def parse_args(argv=None):
    p = make_parser(__doc__.split("\n")[0])
    a = p.add_argument
    a("--checkpoint", default="net.pth", help="the checkpoint train.py saved (default: net.pth)")
    a("--data-dir", default="mnist", help="where MNIST is stored or downloaded to (default: mnist)")
    a("--mirror", default=None, help="folder or http(s) URL prefix with the MNIST .gz files (default: $MNIST_MIRROR)")
    a("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="(default: auto: cuda, mps, cpu)")
    a("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
      help="auto picks what training picks on this hardware, so the numbers match (default: auto)")
    a("--batch-size", type=positive_int, default=256, help="images per evaluation batch (default: 256)")
    a("--json", metavar="FILE", default=None, help="also write the figures as JSON to FILE")
    a("--samples", type=non_negative_int, default=0, metavar="N", help="print N random test images' predictions")
    a("--seed", type=non_negative_int, default=0, help="which random samples --samples shows (default: 0)")
    a("--report", metavar="DIR", default=None,
      help="save confusion.png and misclassified.png (matplotlib) into DIR")
    return p.parse_args(argv)


def format_confusion(cm):
    lines = ["Confusion matrix (rows: true digit, columns: predicted digit):",
             "true\\pred " + "".join(f"{d:>6}" for d in range(10))]
    for d in range(10):
        lines.append(f"{d:>9} " + "".join(f"{int(n):>6}" for n in cm[d]))
    return "\n".join(lines)


def save_report(folder, images, labels, predictions, probabilities, cm):
    """confusion.png and misclassified.png, drawn with matplotlib (no window needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm.log1p().numpy(), cmap="Blues")  # log scale, or the diagonal hides every error
    for t in range(10):
        for p in range(10):
            ax.text(p, t, int(cm[t, p]), ha="center", va="center", fontsize=8,
                    color="white" if t == p else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
           title=f"Confusion matrix, {int(cm.trace())}/{int(cm.sum())} correct")
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=120)
    plt.close(fig)

    wrong = (predictions != labels).nonzero().flatten()
    # the most confident mistakes first: the most instructive ones
    wrong = wrong[probabilities[wrong].max(1).values.argsort(descending=True)][:48]
    cols = 8
    rows = max(1, (len(wrong) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[i].numpy(), cmap="gray")
        ax.set_title(f"true {labels[i]} / pred {predictions[i]}", fontsize=7)
    fig.suptitle(f"{len((predictions != labels).nonzero())} misclassified test digits "
                 f"(most confident mistakes first)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "misclassified.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    use_all_cores()
    model, ckpt = load_checkpoint(args.checkpoint)  # first: a missing checkpoint fails fast
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    norm = ckpt.get("normalization", {})
    images, labels = load_split(False, args.data_dir, args.mirror)
    x = normalize(images, norm.get("mean", 0.1307), norm.get("std", 0.3081)).to(device)
    model = model.to(device).to(memory_format=torch.channels_last)

    res = evaluate(model, x, labels.to(device), batch_size=args.batch_size, precision=precision)
    preds, probs = res["predictions"], res["probabilities"]
    cm = confusion_matrix(labels, preds)
    per_class = {str(d): (cm[d, d] / cm[d].sum()).item() for d in range(10)}

    print(f"Checkpoint {args.checkpoint}: {ckpt['model']} with {count_parameters(model):,} parameters, "
          f"epoch {ckpt.get('epoch')}, validation accuracy {100 * ckpt.get('val_acc', 0):.2f}%")
    print(f"Device {device}, {precision} precision")
    print(f"Accuracy: {100 * res['accuracy']:.2f}% ({res['correct']}/{res['total']})")
    print(f"Average loss: {res['loss']:.4f}")
    print("Accuracy per digit:")
    for d in range(10):
        print(f"  {d}: {100 * per_class[str(d)]:6.2f}% ({int(cm[d, d])}/{int(cm[d].sum())})")
    print(format_confusion(cm))

    if args.samples > 0:
        g = torch.Generator().manual_seed(args.seed)
        pick = torch.randperm(len(labels), generator=g)[:args.samples]
        print(f"{len(pick)} random test images:")
        for i in pick.tolist():
            ok = "ok" if preds[i] == labels[i] else "WRONG"
            print(f"  image {i:>5}: predicted {int(preds[i])} ({100 * probs[i].max():5.1f}%), "
                  f"true {int(labels[i])}  {ok}")

    if args.json:
        out = {"checkpoint": str(args.checkpoint), "model": ckpt["model"], "accuracy": res["accuracy"],
               "correct": res["correct"], "total": res["total"], "loss": res["loss"],
               "per_class_accuracy": per_class, "confusion_matrix": cm.tolist(),
               "checkpoint_epoch": ckpt.get("epoch"), "checkpoint_val_acc": ckpt.get("val_acc"),
               "precision": precision, "device": str(device)}
        try:
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        except OSError as e:
            raise UserError(f"cannot write {args.json}: {e.strerror}") from None
        print(f"Wrote {args.json}")
    if args.report:
        try:
            save_report(Path(args.report), images, labels, preds, probs, cm)
        except OSError as e:
            raise UserError(f"cannot write the report to {args.report}: {e.strerror}") from None
        print(f"Wrote {args.report}/confusion.png and {args.report}/misclassified.png")
    return 0


if __name__ == "__main__":
    run_script(main)
