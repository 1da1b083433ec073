"""Evaluate a saved checkpoint on the 10,000 MNIST test images, on its own.

    python test.py                                   # net.pth: accuracy, per digit, confusion matrix
    python test.py --checkpoint other.pth --json results.json --report report/ --samples 10
    python test.py --attack                          # + accuracy under FGSM and PGD attacks (1,000 images)
    python test.py --checkpoint a.pth b.pth c.pth    # an ensemble: the mean of their probabilities, beside each
    python test.py --tta                             # each image read five times (moved by a pixel each way)
    python test.py --images my_digits/               # your own digits: my_digits/0/..., ..., my_digits/9/...

It needs only the checkpoint and the data: the network is rebuilt from the name and options stored
in the checkpoint, and the images are normalised with the mean and std stored there, as in training.
The probabilities it shows are read at the temperature fitted on validation when the net was trained
(lab/calibration.py), and it prints how well they match how often the net is right: the expected
calibration error (ECE). The tables it prints are markdown: they paste into a lab report as they are.
--attack moves every pixel of each test image by at most ε (0..1, black to white) in the direction that
most hurts the net (FGSM: one step; PGD: 20 smaller steps) and prints what accuracy is left; docs/explain.md compares it
with PyTorch's FGSM tutorial. --images DIR evaluates the checkpoint on your own labelled images
instead (torchvision's ImageFolder layout: DIR/7/ holds sevens), each read as predict.py reads a
file, and prints the same tables with the MNIST test accuracy beside it: the gap is the question.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from lab import calibration, ensemble
from lab.cli import (
    UserError,
    add_checkpoint_flag,
    add_data_flags,
    add_device_flag,
    add_precision_flag,
    make_parser,
    markdown_table,
    non_negative_int,
    positive_int,
    run_script,
)
from lab.data import MEAN, STD, load_split, normalize
from lab.device import pick_device, pick_precision, use_all_cores
from lab.figures import confusion_picture, mistakes_picture, predictions_picture, reliability_picture
from lab.files import make_folder, save_png, write_json
from lab.metrics import confusion_matrix, digit_tables, evaluate, per_digit_accuracy, result_of
from net import count_parameters

ATTACK_IMAGES = 1000
MISTAKES_EXPLAINED = 12


def attack_table(model, ckpt, images, labels, n):
    """--attack: accuracy under FGSM and PGD at each ε on the first n test images, as a table and a dict."""
    from inside.explain import EPSILONS, PGD_STEPS, Explainer, robust_accuracy  # here: captum's import takes 0.7 s

    n = min(n, len(labels))
    print(f"\nAttacking the first {n:,} test images (FGSM and PGD at {len(EPSILONS)} ε)...", flush=True)
    with tqdm(total=2 * n, desc="attacks", unit="image", leave=False, disable=not sys.stderr.isatty()) as bar:
        acc = robust_accuracy(Explainer(model, ckpt), images[:n].float() / 255, labels[:n], progress=bar.update)
    rows = [[f"{e:g}", f"{100 * f:.1f}%", f"{100 * p:.1f}%"] for e, f, p in zip(EPSILONS, acc["fgsm"], acc["pgd"])]
    print(
        f"Accuracy under attack (each pixel moved by at most ε, pixels 0..1; an image counts only if read "
        f"right before the attack too):\n\n{markdown_table(['ε', 'FGSM', f'PGD, {PGD_STEPS} steps'], rows)}"
    )
    return {"images": n, "epsilons": list(EPSILONS), "pgd_steps": PGD_STEPS, "fgsm": acc["fgsm"], "pgd": acc["pgd"]}


def explain_mistakes(path, model, ckpt, images, labels, res):
    """--report's explained.png: the most confident mistakes, what spoke for the digit read and against the true one."""
    from inside.explain import Explainer, why_items  # here: captum's import takes 0.7 s
    from inside.pictures import maps_picture  # (looking inside a net: --report alone does)

    preds, probs = res["predictions"], res["probabilities"]
    wrong = (preds != labels).nonzero().flatten()
    wrong = wrong[probs[wrong].max(1).values.argsort(descending=True)][:MISTAKES_EXPLAINED]
    captions = [f"{int(labels[i])} read as {int(preds[i])} ({100 * float(probs[i].max()):.0f}%)" for i in wrong]
    items = (
        why_items(Explainer(model, ckpt), images[wrong].float() / 255, preds[wrong], labels[wrong], captions)
        if len(wrong)
        else []
    )
    save_png(
        path,
        maps_picture(
            items,
            f"The {len(wrong)} most confident mistakes: red raises the digit's score, "
            "blue lowers it (Integrated Gradients; Grad-CAM: the last conv block)",
        ),
    )


def members_table(ckpt, results, what="test acc"):
    """An ensemble's members, one row each: what each reads alone, to set beside what they read together."""
    rows = [
        [
            m["path"],
            m["model"],
            f"{m['parameters']:,}",
            m.get("epoch"),
            f"{100 * m.get('val_acc', 0):.2f}%",
            f"{100 * r['accuracy']:.2f}%",
        ]
        for m, r in zip(ckpt["members"], results)
    ]
    accs = [r["accuracy"] for r in results]
    return (
        f"An ensemble of {len(results)} checkpoints, reading with the mean of their probabilities:\n\n"
        + markdown_table(["checkpoint", "model", "parameters", "epoch", "val acc", what], rows)
        + f"\n\nMembers alone: mean {100 * sum(accs) / len(accs):.2f}%, best {100 * max(accs):.2f}%; "
        "together, below."
    )


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    add_checkpoint_flag(p, several=True)
    add_data_flags(p)
    add_device_flag(p, "evaluate")
    add_precision_flag(
        p,
        help="auto picks what training picks on this hardware, so the accuracy matches "
        "what train.py reported (default: auto)",
    )
    a("--batch-size", type=positive_int, default=256, metavar="N", help="images per evaluation batch (default: 256)")
    a("--json", metavar="FILE", default=None, help="also write the figures as JSON to FILE")
    a("--samples", type=non_negative_int, default=0, metavar="N", help="print N random test images' predictions")
    a(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="which random images --samples and predictions.png show (default: 0)",
    )
    a(
        "--report",
        metavar="DIR",
        default=None,
        help="save pictures into DIR: confusion.png (the confusion matrix), misclassified.png (the digits "
        "read wrong, most confident first), predictions.png (48 digits at random, right and wrong marked), "
        "reliability.png (how often the net is right at each confidence: its calibration) "
        "and explained.png (the most confident mistakes' maps: which pixels made the net read its digit, "
        "and which spoke against the true one)",
    )
    a(
        "--tta",
        action="store_true",
        help="test-time augmentation: read each image as it is and moved by one pixel up, down, left and right, "
        "and average the five readings' probabilities (five times the work; reported apart from the net's own)",
    )
    a(
        "--attack",
        nargs="?",
        type=positive_int,
        const=ATTACK_IMAGES,
        default=None,
        metavar="N",
        help="also print the accuracy left under FGSM and PGD attacks at ε from 0 to 0.3 (those of PyTorch's "
        f"FGSM tutorial) on the first N test images (default N: {ATTACK_IMAGES:,}, two or three minutes on 2 "
        "cores; 10000 for all); with --json, written there too",
    )
    a(
        "--images",
        metavar="DIR",
        default=None,
        help="evaluate on your own labelled images instead: DIR/0/ holds zeros, ..., DIR/9/ nines (torchvision's "
        "ImageFolder layout, any image predict.py reads), each read as predict.py reads it; the MNIST test "
        "accuracy is printed beside it. --report then saves confusion.png, misclassified.png (each "
        "mistake as written beside the 28x28 image it became) and reliability.png",
    )
    return p


# ---------------------------------------------------------------- --images: your own digits as a test set


def labelled_files(folder):
    """(path, digit) of every image file under folder/0/ ... folder/9/, as torchvision's ImageFolder finds
    them (sub-folders included, sorted), and the names of the other folders there (not digits: ignored)."""
    from torchvision.datasets.folder import make_dataset  # here: its import takes 1.3 s; --images alone needs it

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--images: no folder {folder}: make one with a folder per digit, {folder}/0 to {folder}/9")
    digits = {str(d): d for d in range(10) if (root / str(d)).is_dir()}
    others = sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in digits and not p.name.startswith(".")
    )
    known = tuple(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
    files = make_dataset(root, digits, extensions=known, allow_empty=True) if digits else []
    return [(Path(path), digit) for path, digit in files if not Path(path).name.startswith(".")], others


def read_labelled(folder, classify):
    """Every labelled image read as predict.py reads a file (reading/pages.read, by `classify`), as the one digit
    its folder says it is: (originals, 28x28 images, their probabilities, labels, paths, failed)."""
    from reading.images import ImageProblem  # here: reading your handwriting is --images's alone
    from reading.pages import read  # (and scipy's import takes 0.4 s)

    files, others = labelled_files(folder)
    if others:
        print(
            f"(ignoring the folders {', '.join(others[:5])}{' ...' if len(others) > 5 else ''} in {folder}: "
            "only 0 to 9 are labels)"
        )
    originals = []
    seen = []
    probabilities = []
    labels = []
    paths = []
    failed = []
    for path, digit in files:
        try:
            page = read(path, classify, one_digit=True)
        except ImageProblem as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            failed.append({"file": str(path), "error": str(e)})
            continue
        img = page.image
        img.thumbnail((112, 112))  # kept for the mistakes picture only: small
        originals.append(img)
        seen.append(page.digits[0].pixels)
        probabilities.append(page.digits[0].probabilities)
        labels.append(digit)
        paths.append(path)
    if not seen:
        raise UserError(
            f"--images: no labelled image could be read in {folder}: put each digit's images in "
            f"{folder}/0 to {folder}/9 (python draw.py --collect {folder} makes them)"
        )
    return originals, seen, torch.stack(probabilities), torch.tensor(labels), paths, failed


def member_results(ckpt, net, x, labels, batch_size, precision):
    """For an ensemble, each member's own result on (x, labels), to set beside the ensemble's; None for one net."""
    if "members" not in ckpt:
        return None
    return [evaluate(m, x, labels, batch_size=batch_size, precision=precision) for m in ensemble.members(net)]


def say_checkpoint(path, ckpt, net, members, what="test acc"):
    """The first lines: the checkpoint; for an ensemble, each member's own accuracy (member_results())."""
    if members is None:
        print(
            f"Checkpoint {path}: {ckpt['model']} with {count_parameters(net):,} parameters, "
            f"epoch {ckpt.get('epoch')}, validation accuracy {100 * ckpt.get('val_acc', 0):.2f}%"
        )
    else:
        print(members_table(ckpt, members, what))


def temperature_of(ckpt):
    """The temperature the probabilities are read at (lab/calibration.py): the checkpoint's, 1 for an older one;
    None for an ensemble, whose members each have their own."""
    return None if "members" in ckpt else ckpt.get("temperature", 1.0)


def calibration_json(calibrated, ckpt):
    return {
        "ece": calibrated["ece"],
        "mean_confidence": calibrated["confidence"],
        "temperature": temperature_of(ckpt),
        "reliability": [dict(zip(("low", "high", "count", "confidence", "accuracy"), b)) for b in calibrated["bins"]],
    }


def test_images(args, model, net, ckpt, device, precision):
    """test.py --images DIR: the same figures as for MNIST, on your own digits, with MNIST's beside them.
    `model` reads (the net, an ensemble, or either with --tta); `net` is the one without --tta. Each image is read
    exactly as predict.py reads it, in fp32 (the same probabilities); --precision is MNIST's figure's."""
    from reading.images import net_input  # here: reading your handwriting is --images's alone
    from reading.pages import classifier  # (and scipy's import takes 0.4 s)

    originals, seen, probs, labels, paths, failed = read_labelled(args.images, classifier(model, ckpt, device))
    x = net_input(seen, ckpt).to(device)  # for an ensemble's members, each read alone
    res = result_of(probs, labels, float(F.nll_loss(probs.clamp_min(1e-45).log(), labels)))
    cm = confusion_matrix(labels, res["predictions"])
    norm = ckpt.get("normalization", {})
    images, mnist_labels = load_split(False, args.data_dir, args.mirror)
    mnist = evaluate(
        model,
        normalize(images, norm.get("mean", MEAN), norm.get("std", STD)).to(device),
        mnist_labels.to(device),
        batch_size=args.batch_size,
        precision=precision,
    )
    members = member_results(ckpt, net, x, labels.to(device), args.batch_size, precision)
    say_checkpoint(args.checkpoint[0], ckpt, net, members, "on your images")
    print(
        f"Device {device}, {precision} precision"
        + (", test-time augmentation (each image read five times)" if args.tta else "")
    )
    counts = ", ".join(f"{d}: {int((labels == d).sum())}" for d in range(10))
    print(f"Images: {len(seen)} in {args.images} ({counts})" + (f"; {len(failed)} could not be read" if failed else ""))
    gap = 100 * (mnist["accuracy"] - res["accuracy"])
    print(
        f"Accuracy: {100 * res['accuracy']:.2f}% ({res['correct']}/{res['total']}) on your images, "
        f"{100 * mnist['accuracy']:.2f}% ({mnist['correct']}/{mnist['total']}) on MNIST's test set: "
        f"{abs(gap):.2f} points {'lower' if gap >= 0 else 'higher'}"
    )
    calibrated = calibration.calibration_error(res["probabilities"], labels)
    print(calibration.summary_line(calibrated, temperature_of(ckpt)) + " on your images\n")
    print(digit_tables(cm))
    if args.json:
        preds, probs = res["predictions"], res["probabilities"]
        write_json(
            args.json,
            {
                "checkpoint": args.checkpoint[0] if members is None else args.checkpoint,
                "model": ckpt["model"],
                "images": str(args.images),
                "tta": args.tta,
                **(
                    {}
                    if members is None
                    else {
                        "members": [
                            {"checkpoint": m["path"], "accuracy": r["accuracy"], "correct": r["correct"]}
                            for m, r in zip(ckpt["members"], members)
                        ]
                    }
                ),
                "accuracy": res["accuracy"],
                "correct": res["correct"],
                "total": res["total"],
                "per_class_accuracy": {str(d): a for d, a in enumerate(per_digit_accuracy(cm))},
                "confusion_matrix": cm.tolist(),
                "mnist_accuracy": mnist["accuracy"],
                "failed": failed,
                "files": [
                    {"file": str(p), "label": int(y), "prediction": int(d), "probability": float(q.max())}
                    for p, y, d, q in zip(paths, labels, preds, probs)
                ],
                "checkpoint_epoch": ckpt.get("epoch"),
                "precision": precision,
                "device": str(device),
                **calibration_json(calibrated, ckpt),
            },
        )
        print(f"Wrote {args.json}")
    if args.report:
        save_png(f"{args.report}/confusion.png", confusion_picture(cm))
        save_png(f"{args.report}/misclassified.png", written_mistakes(originals, seen, labels, res))
        save_png(f"{args.report}/reliability.png", reliability_picture(calibrated, str(args.images)))
        print(f"Wrote confusion.png, misclassified.png and reliability.png into {args.report}")
    return 1 if failed else 0  # as predict.py: the others were counted, but not every file could be


def written_mistakes(originals, seen, labels, res, shown=48):
    """The mistakes picture of --images: each wrong digit as written and as the 28x28 image it became."""
    from reading.pictures import written_picture  # here: reading your handwriting is --images's alone

    preds, probs = res["predictions"], res["probabilities"]
    wrong = (preds != labels).nonzero().flatten()
    wrong = wrong[probs[wrong].max(1).values.argsort(descending=True)]
    items = [
        (originals[i], seen[i], f"{int(labels[i])} as {int(preds[i])} {100 * float(probs[i].max()):.0f}%")
        for i in wrong[:shown].tolist()
    ]
    more = f"; the {len(items)} most confident shown" if len(items) < len(wrong) else ""
    return written_picture(
        items,
        f"{len(wrong)} of {len(labels)} read wrong{more} (true digit as read, "
        "confidence): as written, and the 28x28 image the net received",
    )


def main(argv=None):
    args = parser().parse_args(argv)
    use_all_cores()
    model, ckpt = ensemble.load(args.checkpoint)  # first: a missing checkpoint fails fast
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    check_flags(args)
    norm = ckpt.get("normalization", {})
    net = model = model.to(device).to(memory_format=torch.channels_last)
    if args.tta:  # test-time augmentation: the net reads each image five times
        model = ensemble.Shifted(net, -norm.get("mean", MEAN) / norm.get("std", STD))
    if args.images:
        return test_images(args, model, net, ckpt, device, precision)
    return test_mnist(args, model, net, ckpt, device, precision)


def check_flags(args):
    """The flags' mistakes, before the work: a --report folder that cannot be made, a flag --images does not take."""
    if args.report:
        make_folder(args.report, "--report")
    if args.images and (args.attack or args.samples):
        raise UserError("--attack and --samples work on MNIST's test set: run them without --images")


def test_mnist(args, model, net, ckpt, device, precision):
    """test.py on MNIST's test set: the figures and tables printed, then --samples, --attack, --json and --report.
    `model` reads (the net, an ensemble, or either with --tta); `net` is the one without --tta."""
    norm = ckpt.get("normalization", {})
    images, labels = load_split(False, args.data_dir, args.mirror)
    x = normalize(images, norm.get("mean", MEAN), norm.get("std", STD)).to(device)
    alone = None
    if args.tta:  # the net's own figure too, for the line that sets the two side by side
        alone = evaluate(net, x, labels.to(device), batch_size=args.batch_size, precision=precision)

    members = member_results(ckpt, net, x, labels.to(device), args.batch_size, precision)
    say_checkpoint(args.checkpoint[0], ckpt, net, members)
    if members and not args.tta:  # the ensemble's reading is the mean of its members' just made
        res = ensemble.mean_result(members, labels)
    else:
        res = evaluate(model, x, labels.to(device), batch_size=args.batch_size, precision=precision)
    cm = confusion_matrix(labels, res["predictions"])
    calibrated = calibration.calibration_error(res["probabilities"], labels)

    print(f"Device {device}, {precision} precision")
    say_figures(res, alone, cm, calibrated, temperature_of(ckpt))
    if args.samples > 0:
        say_samples(res, labels, args.samples, args.seed)
    attack = attack_table(model, ckpt, images, labels, args.attack) if args.attack else None
    if args.json:
        write_json(
            args.json,
            {
                "checkpoint": args.checkpoint[0] if members is None else args.checkpoint,
                "model": ckpt["model"],
                **(
                    {}
                    if members is None
                    else {
                        "members": [
                            {
                                "checkpoint": m["path"],
                                "accuracy": r["accuracy"],
                                "correct": r["correct"],
                                "epoch": m.get("epoch"),
                                "val_acc": m.get("val_acc"),
                            }
                            for m, r in zip(ckpt["members"], members)
                        ]
                    }
                ),
                "accuracy": res["accuracy"],
                "correct": res["correct"],
                "total": res["total"],
                "loss": res["loss"],
                "per_class_accuracy": {str(d): a for d, a in enumerate(per_digit_accuracy(cm))},
                "confusion_matrix": cm.tolist(),
                "checkpoint_epoch": ckpt.get("epoch"),
                "checkpoint_val_acc": ckpt.get("val_acc"),
                "precision": precision,
                "device": str(device),
                **calibration_json(calibrated, ckpt),
                **({} if alone is None else {"tta": True, "accuracy_without_tta": alone["accuracy"]}),
                **({"attack": attack} if attack else {}),
            },
        )
        print(f"Wrote {args.json}")
    if args.report:
        save_png(f"{args.report}/confusion.png", confusion_picture(cm))
        save_png(f"{args.report}/misclassified.png", mistakes_picture(x, labels, res))
        save_png(f"{args.report}/predictions.png", predictions_picture(x, labels, res, seed=args.seed))
        save_png(f"{args.report}/reliability.png", reliability_picture(calibrated, "MNIST's test set"))
        explain_mistakes(f"{args.report}/explained.png", model, ckpt, images, labels, res)
        print(
            f"Wrote confusion.png, misclassified.png, predictions.png, reliability.png and explained.png "
            f"into {args.report}"
        )
    return 0


def say_figures(res, alone, cm, calibrated, temperature):
    """MNIST's figures: the accuracy (and without --tta, `alone`, when it was used), the loss, the calibration,
    and the tables per digit."""
    if alone is not None:
        print(
            f"Test-time augmentation: each image read as it is and moved by one pixel each way; without it "
            f"{100 * alone['accuracy']:.2f}% ({alone['correct']}/{alone['total']})"
        )
    print(f"Accuracy: {100 * res['accuracy']:.2f}% ({res['correct']}/{res['total']})")
    print(f"Average loss: {res['loss']:.4f}")
    print(calibration.summary_line(calibrated, temperature) + "\n")
    print(digit_tables(cm))


def say_samples(res, labels, n, seed):
    """--samples: n test images picked at random (by the seed), each with what the net read and the truth."""
    preds, probs = res["predictions"], res["probabilities"]
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    print(f"\n{len(pick)} random test images:")
    for i in pick.tolist():
        ok = "ok" if preds[i] == labels[i] else "WRONG"
        print(f"  image {i:>5}: predicted {int(preds[i])} ({100 * probs[i].max():5.1f}%), true {int(labels[i])}  {ok}")


if __name__ == "__main__":
    run_script(main)
