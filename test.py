"""Evaluate a saved checkpoint on the 10,000 MNIST test images, on its own.

    python test.py                                   # net.pth: accuracy, per digit, confusion matrix
    python test.py --checkpoint other.pth --json results.json --report report/ --samples 10

It needs only the checkpoint and the data: the network is rebuilt from the name and options stored
in the checkpoint, and the images are normalised with the mean and std stored there, as in training.
The tables it prints are markdown: they paste into a lab report as they are.
"""
import torch

from lab.checkpoint import load_checkpoint
from lab.cli import (add_checkpoint_flag, add_data_flags, add_device_flag, add_precision_flag, make_parser,
                     non_negative_int, positive_int, run_script)
from lab.data import MEAN, STD, load_split, normalize
from lab.device import pick_device, pick_precision, use_all_cores
from lab.figures import confusion_picture, mistakes_picture, predictions_picture
from lab.files import make_folder, save_png, write_json
from lab.metrics import confusion_matrix, digit_tables, evaluate, per_digit_accuracy
from net import count_parameters


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    add_checkpoint_flag(p)
    add_data_flags(p)
    add_device_flag(p, "evaluate")
    add_precision_flag(p, help="auto picks what training picks on this hardware, so the accuracy matches "
                               "what train.py reported (default: auto)")
    a("--batch-size", type=positive_int, default=256, metavar="N", help="images per evaluation batch (default: 256)")
    a("--json", metavar="FILE", default=None, help="also write the figures as JSON to FILE")
    a("--samples", type=non_negative_int, default=0, metavar="N", help="print N random test images' predictions")
    a("--seed", type=non_negative_int, default=0, metavar="N",
      help="which random images --samples and predictions.png show (default: 0)")
    a("--report", metavar="DIR", default=None,
      help="save pictures into DIR: confusion.png (the confusion matrix), misclassified.png (the digits "
           "read wrong, most confident first) and predictions.png (48 digits at random, right and wrong marked)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    use_all_cores()
    model, ckpt = load_checkpoint(args.checkpoint)  # first: a missing checkpoint fails fast
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    if args.report:
        make_folder(args.report, "--report")  # before the work, so that a bad folder fails at once
    norm = ckpt.get("normalization", {})
    images, labels = load_split(False, args.data_dir, args.mirror)
    x = normalize(images, norm.get("mean", MEAN), norm.get("std", STD)).to(device)
    model = model.to(device).to(memory_format=torch.channels_last)

    res = evaluate(model, x, labels.to(device), batch_size=args.batch_size, precision=precision)
    preds, probs = res["predictions"], res["probabilities"]
    cm = confusion_matrix(labels, preds)

    print(f"Checkpoint {args.checkpoint}: {ckpt['model']} with {count_parameters(model):,} parameters, "
          f"epoch {ckpt.get('epoch')}, validation accuracy {100 * ckpt.get('val_acc', 0):.2f}%")
    print(f"Device {device}, {precision} precision")
    print(f"Accuracy: {100 * res['accuracy']:.2f}% ({res['correct']}/{res['total']})")
    print(f"Average loss: {res['loss']:.4f}\n")
    print(digit_tables(cm))

    if args.samples > 0:
        pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(args.seed))[:args.samples]
        print(f"\n{len(pick)} random test images:")
        for i in pick.tolist():
            ok = "ok" if preds[i] == labels[i] else "WRONG"
            print(f"  image {i:>5}: predicted {int(preds[i])} ({100 * probs[i].max():5.1f}%), "
                  f"true {int(labels[i])}  {ok}")

    if args.json:
        write_json(args.json, {
            "checkpoint": str(args.checkpoint), "model": ckpt["model"], "accuracy": res["accuracy"],
            "correct": res["correct"], "total": res["total"], "loss": res["loss"],
            "per_class_accuracy": {str(d): a for d, a in enumerate(per_digit_accuracy(cm))},
            "confusion_matrix": cm.tolist(), "checkpoint_epoch": ckpt.get("epoch"),
            "checkpoint_val_acc": ckpt.get("val_acc"), "precision": precision, "device": str(device)})
        print(f"Wrote {args.json}")
    if args.report:
        save_png(f"{args.report}/confusion.png", confusion_picture(cm))
        save_png(f"{args.report}/misclassified.png", mistakes_picture(x, labels, res))
        save_png(f"{args.report}/predictions.png", predictions_picture(x, labels, res, seed=args.seed))
        print(f"Wrote confusion.png, misclassified.png and predictions.png into {args.report}")
    return 0


if __name__ == "__main__":
    run_script(main)
