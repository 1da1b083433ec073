"""What train.py shows and logs while an epoch runs, step by step (rank 0 alone).

    in a terminal      a bar with the running loss and accuracy of the epoch
    elsewhere          (an IDE's run window, a notebook, a pipe, a log file) a plain line every
                       --log-every steps, since a bar there shows nothing until the epoch ends
    TensorBoard        every --log-every steps, the mean training loss and accuracy of those steps
                       (loss/train_step, accuracy/train_step); every --eval-every steps, the
                       validation accuracy and loss (accuracy/val_step, loss/val_step)

The x axis of these curves is the step counted from the run's start (an epoch is
ceil(training images / batch size) steps). They go to the run's steps/ folder, which TensorBoard
shows as a run of its own: a resumed run drops the steps logged after its saved epoch there, as it
drops the epochs in the run's own folder.

Reading a number off a GPU makes the CPU wait for the GPU's queue to drain, so the sums stay on
the device and are read only every --log-every steps (every 20 for the bar).
"""

import sys
import time

from tqdm import tqdm

from lab.board import log_step


class EpochSteps:
    def __init__(self, epoch, epochs, steps, writer, every, validate):
        """Epoch `epoch` of `epochs`, of `steps` steps. `writer`: the per-step TensorBoard writer, rank 0's
        (lab/board.py); the other processes have none and show nothing. `every`: (--log-every, --eval-every);
        `validate`: a function that evaluates what is judged (the model or its average) on validation."""
        self.epoch = epoch
        self.epochs = epochs
        self.steps = steps
        self.first = (epoch - 1) * steps  # the run's step count before this epoch
        self.log_every, self.eval_every = every
        self.writer = writer
        self.validate = validate
        self.last = (0.0, 0, 0)  # loss sum, right answers and images at the last point logged
        self.eval_seconds = 0.0  # spent validating between steps: not training time
        self.bar = None
        if writer is not None and sys.stderr.isatty():
            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, dynamic_ncols=True)

    def step(self, step, loss_sum, correct, seen):
        """After training step `step` (from 0) of the epoch, with the epoch's sums so far (tensors, maybe on a GPU)."""
        if self.writer is None:
            return  # not rank 0
        done = self.first + step + 1  # of the whole run
        if self.bar is not None:
            self.bar.update()
            if step % 20 == 0:
                self.bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
        if done % self.log_every == 0:
            total = loss_sum.item()
            right = int(correct.item())
            since = seen - self.last[2]  # images since the last point
            loss = (total - self.last[0]) / since
            accuracy = (right - self.last[1]) / since
            self.last = (total, right, seen)
            log_step(self.writer, done, {"loss/train_step": loss, "accuracy/train_step": accuracy})
            if self.bar is None:
                print(
                    f"step {step + 1}/{self.steps} of epoch {self.epoch}/{self.epochs}  "
                    f"train loss {loss:.4f} acc {100 * accuracy:.2f}%",
                    flush=True,
                )
        if self.eval_every and done % self.eval_every == 0:
            t0 = time.perf_counter()
            val = self.validate()
            self.eval_seconds += time.perf_counter() - t0
            log_step(self.writer, done, {"accuracy/val_step": val["accuracy"], "loss/val_step": val["loss"]})

    def close(self):
        if self.bar is not None:
            self.bar.close()
