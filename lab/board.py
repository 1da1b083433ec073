"""What train.py writes for TensorBoard: the curves, and what the network gets wrong, sees and learns.

    start of a run   Text        the exact command line; Graphs: the model's graph
                     Images      train/samples: the first 48 training images with their labels
    every epoch      Scalars     loss/train, accuracy/train, loss/val, accuracy/val, accuracy/test
                                 (watched, never used to choose), lr, time/epoch_seconds
                     Images      val/confusion (the validation confusion matrix) and val/mistakes
                                 (the validation digits read wrong, most confident first)
                     Histograms  weights/<layer> and grads/<layer> (the gradients of the epoch's last step)
    end of a run     Images      test/confusion and test/mistakes of the best checkpoint on the test set
                     PR curves   pr/0 ... pr/9: precision against recall for each digit, on the test set
                     Projector   the last hidden layer's features of 2,000 test digits, with their
                                 pictures and labels: PCA, t-SNE or UMAP show the ten clusters
                     Text        test report: accuracy, accuracy per digit, the confusion matrix
                     HParams     the run's training settings beside its results

The per-epoch pictures come from the predictions that validation computed anyway, and the end's
from the best epoch's own test evaluation: no extra pass over the data (docs/tensorboard.md).

A full disk or a read-only folder under TensorBoard's writer ends the run with one line naming the
run's folder (events_written); what was saved before, net.pth and last.pt, stays as it was.
"""

import contextlib
import sys
import threading
import warnings
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from lab import calibration
from lab.checkpoint import load_checkpoint
from lab.cli import UserError, shell_join
from lab.data import MEAN, STD
from lab.figures import confusion_picture, mistakes_picture, reliability_picture, samples_picture
from lab.files import why_not_written
from lab.metrics import confusion_matrix, digit_tables, evaluate

PROJECTED = 2000  # test digits in the projector: enough for clear clusters, a sprite of 1,260 px
STEPS = "steps"  # the subfolder of a run that holds its per-step curves


def command_line():
    return shell_join(["python", Path(sys.argv[0]).name, *sys.argv[1:]])


class Board:
    """A run's TensorBoard in its folder `run_dir` (None: under torchrun, a process other than rank 0, whose Board
    writes nothing), with steps/ for the per-step curves (lab/progress.py). It draws `model` and the `data` sets.
    `epochs_done`: where a resumed run carries on (0 for a new run), epochs of `steps` steps."""

    def __init__(self, run_dir, model, data, epochs_done, steps):
        self.dir = run_dir
        self.model = model
        self.data = data
        self.best_test = None  # the best epoch's test evaluation, when this process made it: shown at the end
        self.writer = self.steps = None
        if run_dir is not None:
            self.writer = open_run(run_dir, epochs_done, model, data["train"])
            self.steps = open_steps(run_dir, epochs_done * steps)

    def log_epoch(self, metrics, val, test):
        """An epoch: its metrics and what validation (`val`) saw; `test` is kept for the end if it is the best."""
        log_epoch(self.writer, metrics, self.model, self.data["val"], val)
        if metrics["saved"]:
            self.best_test = test

    def finish(self, interrupted, best, checkpoint, settings_record):
        """The end of the run: the best model (read back from `checkpoint`, net.pth) on the test set, unless it was
        interrupted; both writers closed. `best`: the best epoch and its accuracies."""
        if not interrupted:
            best_model = load_checkpoint(checkpoint)[1]
            log_final(self.writer, self.model, self.data["test"], best, (best_model, self.best_test), settings_record)
        close(self.steps, self.dir)
        close(self.writer, self.dir)


def open_run(run_dir, epochs_done, model, train_set):
    """The run's SummaryWriter, with the command that started or resumed it and, for a new run (no epoch
    done), the model's graph and a grid of the training images with their labels."""
    images, labels = train_set
    with events_written(run_dir):
        if epochs_done == 0:
            writer = SummaryWriter(str(run_dir))
            writer.add_text("command", f"`{command_line()}`", 0)
            writer.add_image("train/samples", samples_picture(images, labels), 0, dataformats="HWC")
            log_graph(writer, model, images[:2])
        else:  # purge_step drops events logged after the saved state, so resumed curves carry on unbroken
            writer = SummaryWriter(str(run_dir), purge_step=epochs_done + 1)
            # at the first step this process logs, so that the start's own line is kept, not repeated
            writer.add_text("command", f"resumed after epoch {epochs_done}: `{command_line()}`", epochs_done + 1)
    return writer


def open_steps(run_dir, steps_done):
    """The writer for the per-step curves (lab/progress.py), in the run's steps/ folder. A resumed run drops
    what was logged there after `steps_done`, the steps of the epochs it saved."""
    with events_written(run_dir):
        return SummaryWriter(str(run_dir / STEPS), purge_step=steps_done + 1 if steps_done else None)


def log_step(writer, step, scalars):
    """One point of the per-step curves: {tag: value} at `step` (writer: from open_steps)."""
    with events_written(Path(writer.log_dir).parent):
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)


def close(writer, run_dir):
    with events_written(run_dir, finished=True):
        writer.close()


# ---------------------------------------------------------------- a full disk under TensorBoard's writer

_thread_failures = []  # what TensorBoard's writer threads died of; events_written() says it


def _keep_writer_failures(hook):
    """threading.excepthook, but a TensorBoard writer thread's OSError is kept for events_written()
    rather than printed as a traceback."""

    def excepthook(args):
        if type(args.thread).__module__.startswith("tensorboard.") and isinstance(args.exc_value, OSError):
            _thread_failures.append(args.exc_value)
        else:
            hook(args)

    excepthook.keeps_writer_failures = True
    return excepthook


@contextlib.contextmanager
def events_written(folder, finished=False):
    """A failure to write TensorBoard's files in `folder` inside this block becomes one line.

    The SummaryWriter writes its events from a thread of its own. When the disk fills (or the folder
    is read-only), that thread dies of the OSError, and the writer raises it again at its next add_*,
    flush or close, wherever that is; add_hparams's own writer never raises it at all. So the thread's
    failures are kept (not printed), and every call into the writer is made in this block, which
    ends with them said. net.pth and last.pt are saved after an epoch's events, never before: a
    failure here leaves them at the previous epoch, from which --resume carries on.
    """
    if not getattr(threading.excepthook, "keeps_writer_failures", False):
        threading.excepthook = _keep_writer_failures(threading.excepthook)
    try:
        yield
        if _thread_failures:
            raise _thread_failures[-1]
    except OSError as e:
        _thread_failures.clear()
        if finished:
            then = "the run itself is complete: its best model and last.pt are saved"
        elif (Path(folder) / "last.pt").is_file():
            then = (
                f"the best model and last.pt saved so far are unchanged; carry on with "
                f"{shell_join(['python', 'train.py', '--resume', folder])}"
            )
        else:
            then = "no epoch was saved yet"
        raise UserError(f"cannot write TensorBoard's files in {folder} {why_not_written(e)}; {then}") from None


def log_graph(writer, model, example):
    try:
        with warnings.catch_warnings():  # add_graph traces with torch.jit, which warns it is deprecated
            warnings.simplefilter("ignore")
            # Traced here, because add_graph's own trace checks itself, and the check's imports
            # alone take 0.7 s; given a traced model, add_graph logs the same graph as is.
            writer.add_graph(torch.jit.trace(model, example, check_trace=False), example)
    except OSError:  # a full disk: events_written() says so
        raise
    except Exception as e:  # the graph is a nicety; never fail a run for it
        print(f"(model graph not logged: {type(e).__name__})")


# The epoch's metrics and their TensorBoard tags: the printed line shows the same metrics.
EPOCH_TAGS = {
    "train_loss": "loss/train",
    "train_acc": "accuracy/train",
    "val_loss": "loss/val",
    "val_acc": "accuracy/val",
    "test_acc": "accuracy/test",
    "lr": "lr",
    "seconds": "time/epoch_seconds",  # training only, for report.py
    "temperature": "calibration/temperature",  # fitted on validation
    "test_ece": "calibration/test_ece",
}


def log_epoch(writer, metrics, model, val_set, val):
    """One epoch's curves (its metrics, as train.py prints them), validation pictures and the distributions of
    weights and gradients. model: the plain nn.Module; val_set: the validation images and labels, which `val`
    evaluated.
    """
    images, labels = val_set
    epoch = metrics["epoch"]
    with events_written(writer.log_dir):
        for key, tag in EPOCH_TAGS.items():
            writer.add_scalar(tag, metrics[key], epoch)
        writer.add_image(
            "val/confusion", confusion_picture(confusion_matrix(labels, val["predictions"])), epoch, dataformats="HWC"
        )
        writer.add_image("val/mistakes", mistakes_picture(images, labels, val), epoch, dataformats="HWC")
        for name, p in model.named_parameters():
            writer.add_histogram(f"weights/{name}", p.detach(), epoch)
            if p.grad is not None:  # the last step's gradients: train_step zeroes them only at the next step
                writer.add_histogram(f"grads/{name}", p.grad, epoch)
        writer.flush()


def log_final(writer, model, test_set, best, kept, settings_record):
    """The best checkpoint on the test set: pictures, PR curves, projector, report; then HParams.

    best: the best epoch and its accuracies (train.py's TrainingState.best); kept: (net.pth's dict, its test
    evaluation, or None where this process did not evaluate it, a run resumed after its best epoch: then it is
    evaluated here). `model` has its weights replaced by the best ones here.
    settings_record: the run's settings (lab/settings.py's record), shown as HParams.
    """
    images, labels = test_set
    best_model, best_test = kept
    precision = settings_record["resolved"]["precision"]
    step = settings_record["training"]["epochs"]
    model.load_state_dict(best_model["state_dict"])
    if best_test is None:
        best_test = evaluate(model, images, labels, precision=precision)
        best_test = calibration.at(best_test, labels, best_model.get("temperature", 1.0))
    n = min(PROJECTED, len(images))
    features = hidden_features(model, images[:n], labels[:n], precision)

    cm = confusion_matrix(labels, best_test["predictions"])
    hparams = {
        k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in settings_record["training"].items()
    }
    with events_written(writer.log_dir, finished=True):
        writer.add_image("test/confusion", confusion_picture(cm), step, dataformats="HWC")
        writer.add_image("test/mistakes", mistakes_picture(images, labels, best_test), step, dataformats="HWC")
        writer.add_image(
            "test/reliability", reliability_picture(best_test["calibration"], "test set"), step, dataformats="HWC"
        )
        truth = labels.cpu()
        for d in range(10):
            writer.add_pr_curve(f"pr/{d}", truth == d, best_test["probabilities"][:, d], step)
        pictures = (images[:n].float() * STD + MEAN).clamp(0, 1).cpu()
        writer.add_embedding(
            features, metadata=truth[:n].tolist(), label_img=pictures, global_step=step, tag="test_digits"
        )
        writer.add_text("test report", test_report(best_model.get("epoch"), best_test, cm), step)
        writer.add_hparams(
            {**hparams, "precision": precision},
            {
                "hparam/best_val_acc": best["val_acc"],
                "hparam/test_acc": best["test_acc"],
                "hparam/best_epoch": best["epoch"],
                "hparam/test_ece": best_test["calibration"]["ece"],
            },
            run_name=".",
        )
        writer.flush()  # here, so that a failure to write them is said here


def test_report(epoch, result, cm):
    """The best checkpoint's test figures as markdown (TensorBoard's Text tab draws the tables)."""
    return (
        f"**Test accuracy of the best checkpoint (epoch {epoch}, chosen on validation): "
        f"{100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']})**, "
        f"average loss {result['loss']:.4f}\n\n{calibration.summary_line(result['calibration'], result['temperature'])}"
        f"\n\n{digit_tables(cm)}"
    )


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
