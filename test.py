"""Evaluate a saved checkpoint on the 10,000 MNIST test images, on its own.

    python test.py                                   # net.pth: accuracy, per digit, confusion matrix
    python test.py --checkpoint other.pth --json results.json --report report/ --samples 10
    python test.py --attack                          # + accuracy under FGSM and PGD attacks (1,000 images)
    python test.py --checkpoint a.pth b.pth c.pth    # an ensemble: the mean of their probabilities, beside each
    python test.py --tta                             # each image read five times (moved by a pixel each way)

It needs only the checkpoint and the data: the network is rebuilt from the name and options stored
in the checkpoint, and the images are normalised with the mean and std stored there, as in training.
The tables it prints are markdown: they paste into a lab report as they are. --attack moves every
pixel of each test image by at most ε (0..1, black to white) in the direction that most hurts the net
(FGSM: one step; PGD: 20 smaller steps) and prints what accuracy is left; docs/explain.md compares it
with PyTorch's FGSM tutorial.
"""
import sys

import torch
from tqdm import tqdm

from lab import ensemble
from lab.cli import (add_checkpoint_flag, add_data_flags, add_device_flag, add_precision_flag, make_parser,
                     markdown_table, non_negative_int, positive_int, run_script)
from lab.data import MEAN, STD, load_split, normalize
from lab.device import pick_device, pick_precision, use_all_cores
from lab.figures import confusion_picture, maps_picture, mistakes_picture, predictions_picture
from lab.files import make_folder, save_png, write_json
from lab.metrics import confusion_matrix, digit_tables, evaluate, per_digit_accuracy
from net import count_parameters

ATTACK_IMAGES = 1000
MISTAKES_EXPLAINED = 12


def attack_table(model, ckpt, images, labels, n):
    """--attack: accuracy under FGSM and PGD at each ε on the first n test images, as a table and a dict."""
    from lab.explain import EPSILONS, PGD_STEPS, Explainer, robust_accuracy  # here: captum's import takes 0.7 s

    n = min(n, len(labels))
    print(f"\nAttacking the first {n:,} test images (FGSM and PGD at {len(EPSILONS)} ε)...", flush=True)
    with tqdm(total=2 * n, desc="attacks", unit="image", leave=False, disable=not sys.stderr.isatty()) as bar:
        acc = robust_accuracy(Explainer(model, ckpt), images[:n].float() / 255, labels[:n], progress=bar.update)
    rows = [[f"{e:g}", f"{100 * f:.1f}%", f"{100 * p:.1f}%"] for e, f, p in zip(EPSILONS, acc["fgsm"], acc["pgd"])]
    print(f"Accuracy under attack (each pixel moved by at most ε, pixels 0..1; an image counts only if read "
          f"right before the attack too):\n\n{markdown_table(['ε', 'FGSM', f'PGD, {PGD_STEPS} steps'], rows)}")
    return {"images": n, "epsilons": list(EPSILONS), "pgd_steps": PGD_STEPS, "fgsm": acc["fgsm"], "pgd": acc["pgd"]}


def explain_mistakes(path, model, ckpt, images, labels, res):
    """--report's explained.png: the most confident mistakes, what spoke for the digit read and against the true one."""
    from lab.explain import Explainer, why_items  # here: captum's import takes 0.7 s

    preds, probs = res["predictions"], res["probabilities"]
    wrong = (preds != labels).nonzero().flatten()
    wrong = wrong[probs[wrong].max(1).values.argsort(descending=True)][:MISTAKES_EXPLAINED]
    captions = [f"{int(labels[i])} read as {int(preds[i])} ({100 * float(probs[i].max()):.0f}%)" for i in wrong]
    items = why_items(Explainer(model, ckpt), images[wrong].float() / 255, preds[wrong], labels[wrong],
                      captions) if len(wrong) else []
    save_png(path, maps_picture(items, f"The {len(wrong)} most confident mistakes: red raises the digit's score, "
                                       "blue lowers it (Integrated Gradients; Grad-CAM: the last conv block)"))


def members_table(ckpt, results):
    """An ensemble's members, one row each: what each reads alone, to set beside what they read together."""
    rows = [[m["path"], m["model"], f"{m['parameters']:,}", m.get("epoch"), f"{100 * m.get('val_acc', 0):.2f}%",
             f"{100 * r['accuracy']:.2f}%"] for m, r in zip(ckpt["members"], results)]
    accs = [r["accuracy"] for r in results]
    return (f"An ensemble of {len(results)} checkpoints, reading with the mean of their probabilities:\n\n"
            + markdown_table(["checkpoint", "model", "parameters", "epoch", "val acc", "test acc"], rows)
            + f"\n\nMembers alone: mean {100 * sum(accs) / len(accs):.2f}%, best {100 * max(accs):.2f}%; "
              "together, below.")


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    add_checkpoint_flag(p, several=True)
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
           "read wrong, most confident first), predictions.png (48 digits at random, right and wrong marked) "
           "and explained.png (the most confident mistakes' maps: which pixels made the net read its digit, "
           "and which spoke against the true one)")
    a("--tta", action="store_true",
      help="test-time augmentation: read each image as it is and moved by one pixel up, down, left and right, "
           "and average the five readings' probabilities (five times the work; reported apart from the net's own)")
    a("--attack", nargs="?", type=positive_int, const=ATTACK_IMAGES, default=None, metavar="N",
      help="also print the accuracy left under FGSM and PGD attacks at ε from 0 to 0.3 (those of PyTorch's "
           f"FGSM tutorial) on the first N test images (default N: {ATTACK_IMAGES:,}, two or three minutes on 2 "
           "cores; 10000 for all); with --json, written there too")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    use_all_cores()
    model, ckpt = ensemble.load(args.checkpoint)  # first: a missing checkpoint fails fast
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    if args.report:
        make_folder(args.report, "--report")  # before the work, so that a bad folder fails at once
    norm = ckpt.get("normalization", {})
    images, labels = load_split(False, args.data_dir, args.mirror)
    x = normalize(images, norm.get("mean", MEAN), norm.get("std", STD)).to(device)
    net = model = model.to(device).to(memory_format=torch.channels_last)
    alone = None
    if args.tta:  # the net's own figure first, for the line that sets the two side by side
        alone = evaluate(net, x, labels.to(device), batch_size=args.batch_size, precision=precision)
        model = ensemble.Shifted(net, -norm.get("mean", MEAN) / norm.get("std", STD))

    res = evaluate(model, x, labels.to(device), batch_size=args.batch_size, precision=precision)
    preds, probs = res["predictions"], res["probabilities"]
    cm = confusion_matrix(labels, preds)

    members = None
    if "members" in ckpt:  # an ensemble: each member's own accuracy first, the ensemble's below
        members = [evaluate(m, x, labels.to(device), batch_size=args.batch_size, precision=precision)
                   for m in ensemble.members(net)]
        print(members_table(ckpt, members))
    else:
        print(f"Checkpoint {args.checkpoint[0]}: {ckpt['model']} with {count_parameters(net):,} parameters, "
              f"epoch {ckpt.get('epoch')}, validation accuracy {100 * ckpt.get('val_acc', 0):.2f}%")
    print(f"Device {device}, {precision} precision")
    if alone is not None:
        print(f"Test-time augmentation: each image read as it is and moved by one pixel each way; without it "
              f"{100 * alone['accuracy']:.2f}% ({alone['correct']}/{alone['total']})")
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

    attack = attack_table(model, ckpt, images, labels, args.attack) if args.attack else None

    if args.json:
        write_json(args.json, {
            "checkpoint": args.checkpoint[0] if members is None else args.checkpoint, "model": ckpt["model"],
            **({} if members is None else {"members": [
                {"checkpoint": m["path"], "accuracy": r["accuracy"], "correct": r["correct"], "epoch": m.get("epoch"),
                 "val_acc": m.get("val_acc")} for m, r in zip(ckpt["members"], members)]}),
            "accuracy": res["accuracy"],
            "correct": res["correct"], "total": res["total"], "loss": res["loss"],
            "per_class_accuracy": {str(d): a for d, a in enumerate(per_digit_accuracy(cm))},
            "confusion_matrix": cm.tolist(), "checkpoint_epoch": ckpt.get("epoch"),
            "checkpoint_val_acc": ckpt.get("val_acc"), "precision": precision, "device": str(device),
            **({} if alone is None else {"tta": True, "accuracy_without_tta": alone["accuracy"]}),
            **({"attack": attack} if attack else {})})
        print(f"Wrote {args.json}")
    if args.report:
        save_png(f"{args.report}/confusion.png", confusion_picture(cm))
        save_png(f"{args.report}/misclassified.png", mistakes_picture(x, labels, res))
        save_png(f"{args.report}/predictions.png", predictions_picture(x, labels, res, seed=args.seed))
        explain_mistakes(f"{args.report}/explained.png", model, ckpt, images, labels, res)
        print(f"Wrote confusion.png, misclassified.png, predictions.png and explained.png into {args.report}")
    return 0


if __name__ == "__main__":
    run_script(main)
