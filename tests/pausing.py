"""Run one of the lab's scripts so that its training stops at a known step until Ctrl-C arrives.

    python tests/pausing.py STEP train.py --epochs 3 ...
    python tests/pausing.py STEP sweep.py --model mlp ...     # with --jobs N, each run pauses
    torchrun --nproc_per_node 2 tests/pausing.py STEP train.py ...

A test that interrupts a run must know where the interrupt lands, on a CPU three times
slower than the last one or on a GPU a hundred times faster. Sending SIGINT when a line
appears races the run; instead, the run finishes its STEP-th training step (counted from 1
over the whole process), prints "paused at step STEP" on stderr and waits. Only then does
the test send the signal, which lands in that step, whatever the machine's speed.

Nothing in the lab knows about this: it wraps train.train_step from outside, and runs the
script's main() as `python SCRIPT` would (through lab.cli.run_script).
"""
import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train  # noqa: E402  (after the path is set)
from lab.cli import run_script  # noqa: E402


def pause_after(step_at):
    real_step, done = train.train_step, 0

    def train_step(*args, **kwargs):
        nonlocal done
        result = real_step(*args, **kwargs)
        done += 1
        if done == step_at:
            # One write, not print's two (text, then newline): under torchrun the ranks share stderr,
            # and their lines must not be cut into each other.
            sys.stderr.write(f"paused at step {step_at} (process {os.getpid()}, rank {os.environ.get('RANK', 0)})\n")
            sys.stderr.flush()
            while True:  # a signal handler's exception (KeyboardInterrupt) ends this
                time.sleep(0.05)
        return result

    train.train_step = train_step  # train_one_epoch looks the name up in train's namespace


if __name__ == "__main__":
    step, script, *rest = sys.argv[1:]
    pause_after(int(step))
    if Path(script).stem == "sweep":  # with --jobs N its runs are processes of their own: they pause too
        import sweep
        sweep.TRAIN = [sys.executable, str(Path(__file__).resolve()), step, *sweep.TRAIN[1:]]
    sys.argv = [script, *rest]
    run_script(importlib.import_module(Path(script).stem).main)
