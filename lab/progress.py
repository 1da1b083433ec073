"""What train.py shows while an epoch runs: a bar with the running loss and accuracy (in a terminal)."""
import sys

from tqdm import tqdm


class EpochBar:
    """The bar under the epoch lines: rank 0 only, and only where stderr is a terminal."""

    def __init__(self, epoch, epochs, steps, rank=0):
        self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                        disable=not sys.stderr.isatty() or rank != 0, dynamic_ncols=True)

    def step(self, step, loss_sum, correct, seen):
        """After training step `step` (from 0) of the epoch; the sums are tensors, possibly on a GPU."""
        if self.bar.disable:
            return
        self.bar.update()
        if step % 20 == 0:  # .item() waits for a GPU to finish: not at every step
            self.bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")

    def close(self):
        self.bar.close()
