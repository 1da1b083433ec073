"""Train the reader of touching digits (reading/reader.py), which predict.py, draw.py and bench.py --pages
use to read a number whose digits touch.

    python train_reader.py                 # 60,000 pieces, 7,000 steps: about 20 minutes on 2 CPU cores
    python train_reader.py --steps 1500    # quicker, a little less sure
    python predict.py page.jpg             # reads with reader.pth when it is there

The digit net (train.py) reads one digit. Where the digits of a number touch, reading/pages.py must cut
them apart, and the digit net cannot say how many digits a piece of ink holds: it reads two touching
digits as one. This reader reads the whole piece, left to right, and says which digits it holds
(a CRNN trained with CTC). It learns from pieces made from MNIST's training digits; the validation
digits' pieces choose the best step, and it is measured on pieces of MNIST's test digits.
"""

import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from lab.cli import add_data_flags, fmt_time, make_parser, positive_float, positive_int, run_script
from lab.data import load_split, split_train_val
from reading.reader import Reader, batch, load_reader, measure, reader_input, save_reader
from reading.sheets import make_piece

CHUNK = 500  # pieces made by one worker at a time


def parser():
    p = make_parser(__doc__)
    a = p.add_argument
    a("--pieces", type=positive_int, default=60_000, help="pieces of touching digits to learn from (default: 60000)")
    a("--steps", type=positive_int, default=7000, help="training steps of --batch-size pieces (default: 7000)")
    a(
        "--check-pieces",
        type=positive_int,
        default=2000,
        help="pieces made from the validation digits (which choose the best step), and as many from the test digits "
        "(which measure it) (default: 2000)",
    )
    a("--batch-size", type=positive_int, default=64, help="pieces per step (default: 64)")
    a("--lr", type=positive_float, default=3e-3, help="peak learning rate of the one-cycle schedule (default: 0.003)")
    a("--seed", type=int, default=0, help="seed of the pieces and of the training (default: 0)")
    a("--eval-every", type=positive_int, default=500, help="steps between measurements on validation (default: 500)")
    a("--out", metavar="FILE", default="reader.pth", help="where to save the best reader (default: reader.pth)")
    add_data_flags(p)
    return p


_digits = {}  # each worker's MNIST images and labels, by split: given once, not with every chunk


def _start(splits):
    _digits.update(splits)


def _make(job):
    split, seed, n = job
    rng = np.random.default_rng(seed)
    images, labels = _digits[split]
    return [(reader_input(ink), text) for ink, text in (make_piece(images, labels, rng) for _ in range(n))]


def make_pieces(split, n, seed, pool):
    """n pieces of `split`'s digits as (reader input, digits), made in chunks by the worker processes: the same
    for the same seed, however many workers."""
    jobs = [(split, [seed, k], min(CHUNK, n - k)) for k in range(0, n, CHUNK)]
    return [piece for chunk in pool.map(_make, jobs) for piece in chunk]


def main(argv=None):
    args = parser().parse_args(argv)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    images, labels = load_split(True, args.data_dir, args.mirror)
    (train_x, train_y), (val_x, val_y) = split_train_val(images, labels, 5000)  # train.py's split: same seed
    test_x, test_y = load_split(False, args.data_dir, args.mirror)
    splits = {
        "train": (train_x.numpy(), train_y.numpy()),
        "val": (val_x.numpy(), val_y.numpy()),
        "test": (test_x.numpy(), test_y.numpy()),
    }
    with ProcessPoolExecutor(max(1, min(torch.get_num_threads(), 8)), initializer=_start, initargs=(splits,)) as pool:
        train = make_pieces("train", args.pieces, args.seed, pool)
        val = make_pieces("val", args.check_pieces, 10_000 + args.seed, pool)
        test = make_pieces("test", args.check_pieces, 20_000 + args.seed, pool)
    print(
        f"Made {len(train):,} pieces of touching digits from MNIST's training digits, {len(val):,} from the "
        f"validation digits and {len(test):,} from the test digits in {fmt_time(time.perf_counter() - t0)}",
        flush=True,
    )

    # Pieces of alike widths train together: a batch pads less
    train.sort(key=lambda p: p[0].shape[1])
    chunks = [train[i : i + args.batch_size] for i in range(0, len(train), args.batch_size)]
    model = Reader()
    opt = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.15)
    order, best, t1 = [], (-1.0, 0.0, 0), time.perf_counter()
    for step in range(1, args.steps + 1):
        if not order:
            order = torch.randperm(len(chunks)).tolist()
        chunk = chunks[order.pop()]
        x, columns = batch([a for a, _ in chunk])
        targets = torch.tensor([int(d) + 1 for _, text in chunk for d in text])
        logp = model(x).log_softmax(-1).transpose(0, 1)  # [T, B, 11], as ctc_loss takes it
        loss = F.ctc_loss(logp, targets, columns, torch.tensor([len(t) for _, t in chunk]), zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            exact, digits = measure(model, val)
            saved = exact > best[0]
            if saved:
                best = (exact, digits, step)
                save_reader(model, args.out, step=step, val_exact=exact, val_digits=digits, settings=vars(args))
            print(
                f"step {step:,}/{args.steps:,}  loss {loss.item():.4f}  "
                f"validation pieces read exactly {100 * exact:.2f}% digits {100 * digits:.2f}%  "
                f"{fmt_time(time.perf_counter() - t1)}" + ("  * saved" if saved else ""),
                flush=True,
            )
    model, saved = load_reader(args.out)
    exact, digits = measure(model, test)
    save_reader(
        model,
        args.out,
        **{k: v for k, v in saved.items() if k not in ("format", "version", "state_dict", "torch_version")},
        test_exact=exact,
        test_digits=digits,
    )
    print(
        f"Saved to {args.out} (step {best[2]:,}): pieces of MNIST test digits read exactly {100 * exact:.2f}%, "
        f"digits {100 * digits:.2f}%. Wall time {fmt_time(time.perf_counter() - t0)}."
    )
    return 0


if __name__ == "__main__":
    run_script(main)
