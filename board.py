"""What train.py shows in TensorBoard besides the curves: mistakes, confusion, clusters, distributions.

    start of a run   Text        the exact command line
    every epoch      Images      val/confusion (the confusion matrix of the validation set) and
                                 val/mistakes (the validation digits it got wrong, most confident first)
                     Histograms  weights/<layer> and grads/<layer> (the gradients of the epoch's last step)
    end of a run     Images      test/confusion and test/mistakes, of the best checkpoint on the test set
                     PR curves   pr/0 ... pr/9: precision against recall for each digit, on the test set
                     Projector   the last hidden layer's features of 2,000 test digits, with their
                                 pictures and labels: PCA, t-SNE or UMAP show the ten clusters
                     Text        test report: accuracy, accuracy per digit, the confusion matrix

Pictures are drawn with Pillow straight into arrays (a few milliseconds each); matplotlib
would cost more to import than all of this costs to run. The per-epoch pictures come from
the predictions that validation computed anyway: no extra pass over the data.
"""
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from checkpoint import load_checkpoint
from data import MEAN, STD
from metrics import confusion_matrix, evaluate

MISTAKES_SHOWN = 48   # the grid's size: 4 rows of 12
PROJECTED = 2000      # test digits in the projector: enough for clear clusters, a sprite of 1,260 px


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


def mistakes_picture(images, labels, result):
    """The wrongly read digits, most confident mistake first, each captioned 'true as predicted, confidence'.

    images: the normalised [N, 1, 28, 28] inputs; labels [N]; result: what metrics.evaluate returned.
    """
    labels, pred, prob = labels.cpu(), result["predictions"], result["probabilities"]
    every = (pred != labels).nonzero().flatten()
    confidence = prob[every].max(1).values
    order = confidence.argsort(descending=True)[:MISTAKES_SHOWN]
    wrong, confidence = every[order], confidence[order]
    pixels = (images[wrong.to(images.device)].float() * STD + MEAN).clamp(0, 1).mul(255).byte().cpu()

    cols, tile, gap, caption = 12, 56, 10, 15
    rows = max(1, -(-len(wrong) // cols))
    img = Image.new("RGB", (cols * (tile + gap) + gap, 22 + rows * (tile + caption + 4)), (245, 245, 245))
    draw, small = ImageDraw.Draw(img), font(11)
    shown = f"; the {len(wrong)} most confident shown" if len(wrong) < len(every) else ""
    draw.text((gap, 4), f"{len(every)} of {len(labels)} read wrong{shown} (true digit as read, confidence)",
              fill="black", font=small)
    for k, (i, c) in enumerate(zip(wrong.tolist(), confidence.tolist())):
        x, y = gap + (k % cols) * (tile + gap), 22 + (k // cols) * (tile + caption + 4)
        draw.text((x - 2, y), f"{int(labels[i])} as {int(pred[i])} {100 * c:.0f}%", fill=(180, 0, 0), font=small)
        digit = Image.fromarray(pixels[k, 0].numpy()).resize((tile, tile), Image.Resampling.NEAREST)
        img.paste(digit, (x, y + caption))
    return np.asarray(img)


def command_line():
    return "python " + shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def log_start(writer, resumed_after=None):
    """The command that started (or resumed) the run, as TensorBoard text."""
    if resumed_after is None:
        writer.add_text("command", f"`{command_line()}`", 0)
    else:  # at the first step this process logs, so that the start's own line is kept, not repeated
        writer.add_text("command", f"resumed after epoch {resumed_after}: `{command_line()}`", resumed_after + 1)


def log_epoch(writer, epoch, model, images, labels, result):
    """Validation pictures and the distributions of weights and gradients (model: the plain nn.Module)."""
    writer.add_image("val/confusion", confusion_picture(confusion_matrix(labels, result["predictions"])),
                     epoch, dataformats="HWC")
    writer.add_image("val/mistakes", mistakes_picture(images, labels, result), epoch, dataformats="HWC")
    for name, p in model.named_parameters():
        writer.add_histogram(f"weights/{name}", p.detach(), epoch)
        if p.grad is not None:  # the last step's gradients: train_step zeroes them only at the next step
            writer.add_histogram(f"grads/{name}", p.grad, epoch)


def test_report(epoch, result, cm):
    """The best checkpoint's test figures as markdown (TensorBoard's Text tab draws the tables)."""
    per_digit = [cm[d, d].item() / max(cm[d].sum().item(), 1) for d in range(10)]
    lines = [f"**Test accuracy of the best checkpoint (epoch {epoch}, chosen on validation): "
             f"{100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']})**, "
             f"average loss {result['loss']:.4f}", "",
             "| digit | " + " | ".join(map(str, range(10))) + " |", "|---" * 11 + "|",
             "| accuracy | " + " | ".join(f"{100 * a:.1f}%" for a in per_digit) + " |", "",
             "Confusion matrix (rows: true digit, columns: predicted digit)", "",
             "| true \\ predicted | " + " | ".join(map(str, range(10))) + " |", "|---" * 11 + "|"]
    lines += [f"| **{d}** | " + " | ".join(str(int(n)) for n in cm[d]) + " |" for d in range(10)]
    return "\n".join(lines)


def hidden_features(model, images, labels, precision):
    """What enters the model's last Linear, i.e. its last hidden layer (cnn: the 128 of the dense head;
    cnn2 has no hidden dense layer, so for it these are the flattened conv features)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    features = []
    hook = last.register_forward_pre_hook(lambda m, inputs: features.append(inputs[0].float().cpu()))
    try:
        evaluate(model, images, labels, precision=precision)  # in cache-sized batches, as everywhere
    finally:
        hook.remove()
    return torch.cat(features)


def log_final(writer, step, checkpoint, images, labels, precision, result=None):
    """The best checkpoint on the test set: pictures, PR curves, projector, report.

    result: that checkpoint's test evaluation, where this process made it; a run resumed after
    its best epoch has none, and the checkpoint is evaluated again.
    """
    model, ckpt = load_checkpoint(checkpoint)
    model = model.to(images.device).to(memory_format=torch.channels_last)
    if result is None:
        result = evaluate(model, images, labels, precision=precision)
    n = min(PROJECTED, len(images))
    features = hidden_features(model, images[:n], labels[:n], precision)

    cm = confusion_matrix(labels, result["predictions"])
    writer.add_image("test/confusion", confusion_picture(cm), step, dataformats="HWC")
    writer.add_image("test/mistakes", mistakes_picture(images, labels, result), step, dataformats="HWC")
    truth = labels.cpu()
    for d in range(10):
        writer.add_pr_curve(f"pr/{d}", truth == d, result["probabilities"][:, d], step)
    pictures = (images[:n].float() * STD + MEAN).clamp(0, 1).cpu()
    writer.add_embedding(features, metadata=truth[:n].tolist(), label_img=pictures, global_step=step,
                         tag="test_digits")
    writer.add_text("test report", test_report(ckpt.get("epoch"), result, cm), step)
