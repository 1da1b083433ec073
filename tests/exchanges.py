"""Run train.py so that each process writes down what each of its training steps did.

    python tests/exchanges.py FOLDER train.py --epochs 3 ...
    torchrun --nproc_per_node 2 tests/exchanges.py FOLDER train.py ...
    python tests/pausing.py STEP tests/exchanges.py FOLDER train.py ...      # and stopped at step STEP

Each process (RANK, 0 without torchrun) appends to FOLDER/rank-RANK.jsonl, as it happens:
- {"epoch": E, "images": [...], "weight": W} when training_batches hands it a batch: the indices, in the
  training set, of the images of its share, and the weight of its loss;
- {"exchanged": N} each time DDP all-reduces a bucket of N gradient values (its communication hook), which
  happens during the backward of the step of the batch written last;
and FOLDER/gradient-RANK.pt: the gradients its first step stepped with (after DDP's exchange).

So a test checks at every step of a run, not only its first, that every process exchanged the whole
gradient, and that the processes' shares of each batch are disjoint and make the batch that one process
trains on. Written line by line, not at the end: a run stopped by Ctrl-C keeps what it did.

Nothing in the lab knows about this: it wraps training_batches, distributed.wrap, distributed.seed_epoch
and train_step from outside, and runs the script's main() as `python SCRIPT` would.
"""
import importlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402  (after the path is set)
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook  # noqa: E402

import train  # noqa: E402
from lab import distributed  # noqa: E402
from lab.cli import run_script  # noqa: E402


def record(folder):
    rank = os.environ.get("RANK", "0")
    log = Path(folder) / f"rank-{rank}.jsonl"
    epoch = None

    def write(entry):
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    real_seed_epoch = distributed.seed_epoch

    def seed_epoch(seed, e, aug_generator):  # train.py calls it at the start of each epoch
        nonlocal epoch
        epoch = e
        return real_seed_epoch(seed, e, aug_generator)

    real_batches = train.training_batches

    def training_batches(train_set, *args, **kwargs):
        # each image by its bytes: which of the training set's images a share holds
        where = {x.numpy().tobytes(): i for i, x in enumerate(train_set[0].cpu())}
        assert len(where) == len(train_set[0]), "two training images are the same: use other ones"
        for x, y, weight in real_batches(train_set, *args, **kwargs):
            write({"epoch": epoch, "images": [where[i.numpy().tobytes()] for i in x.cpu()], "weight": weight})
            yield x, y, weight

    def counted_allreduce(process_group, bucket):
        write({"exchanged": bucket.buffer().numel()})
        return allreduce_hook(process_group, bucket)

    real_wrap = distributed.wrap

    def wrap(model, device):
        wrapped = real_wrap(model, device)
        if wrapped is not model:  # DDP
            wrapped.register_comm_hook(None, counted_allreduce)
        return wrapped

    real_step = train.train_step
    steps = 0

    def train_step(model, *args, **kwargs):
        nonlocal steps
        result = real_step(model, *args, **kwargs)
        steps += 1
        if steps == 1:
            torch.save([p.grad for p in model.parameters()], Path(folder) / f"gradient-{rank}.pt")
        return result

    distributed.seed_epoch = seed_epoch
    distributed.wrap = wrap
    train.training_batches = training_batches  # train.py looks these names up when it calls them
    train.train_step = train_step


def main():
    folder, script, *rest = sys.argv[1:]
    record(folder)
    sys.argv = [script, *rest]
    return importlib.import_module(Path(script).stem).main()


if __name__ == "__main__":
    run_script(main)
