"""Train a network on MNIST, log to TensorBoard, keep the best checkpoint.

    python train.py                      # the default run (~99.5% test accuracy, 35 s to 2 min on 2 cores)
    python train.py --epochs 1           # one quick epoch (~99.2%, 8 to 21 s)
    python train.py --augment --epochs 20  # with batch norm: ~99.6%, 2 to 7 minutes
    tensorboard --logdir boardlog        # watch the curves
    torchrun --standalone --nproc_per_node 2 train.py  # data-parallel: 2 GPUs, or 2 CPU processes (README)

The 60,000 training images are split into 55,000 to train on and 5,000 to
validate on. The validation accuracy picks the best epoch, whose weights are
saved to net.pth. The 10,000 test images are measured every epoch so you can
watch them in TensorBoard, but they never choose anything: choosing on the test
set would make the reported test accuracy optimistic.
"""
import argparse
import inspect
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import distributed
from checkpoint import atomic_save, load_file, make_checkpoint
from common import (UserError, autocast, fraction, keep_freed_memory, make_folder, make_parser,
                    non_negative_float, non_negative_int, pick_device, pick_precision, positive_float,
                    positive_int, run_script, use_all_cores)
from data import MEAN, STD, augment, batches, load_split, normalize, split_train_val
from net import MODELS, build_model, count_parameters

STATE_FILE = "last.pt"  # the resumable state, saved in the run's log folder every epoch


def parse_args(argv=None):
    p = make_parser(__doc__.split("\n")[0])
    a = p.add_argument
    a("--epochs", type=positive_int, default=6, help="passes over the training images (default: 6)")
    a("--batch-size", type=positive_int, default=128, help="images per training step (default: 128)")
    a("--lr", type=positive_float, default=6e-3, help="peak learning rate (default: 0.006)")
    a("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop", "adadelta"], default="adamw",
      help="optimiser (default: adamw)")
    a("--momentum", type=non_negative_float, default=0.9, help="momentum for sgd and rmsprop (default: 0.9)")
    a("--weight-decay", type=non_negative_float, default=None,
      help="decoupled decay for adamw, L2 penalty for the others (default: 0.05 for adamw, else 0)")
    a("--scheduler", choices=["onecycle", "step", "cosine", "none"], default="onecycle",
      help="learning-rate schedule (default: onecycle: warm up, then anneal to ~0)")
    a("--step-size", type=positive_int, default=3, help="epochs between lr drops for --scheduler step (default: 3)")
    a("--gamma", type=positive_float, default=0.1, help="lr factor at each drop for --scheduler step (default: 0.1)")
    a("--label-smoothing", type=fraction, default=0.1, help="cross-entropy label smoothing (default: 0.1)")
    a("--model", choices=list(MODELS), default="cnn", help="network from net.py (default: cnn)")
    a("--dropout", type=fraction, default=None, help="dropout in the dense head of cnn (default: 0)")
    a("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
      help="batch norm in cnn's conv blocks (default: on with --augment, else off)")
    a("--augment", action="store_true",
      help="random shifts, rotations and scaling of each batch (use with ~20 epochs)")
    a("--seed", type=non_negative_int, default=1, help="seed for initialisation, shuffling and augmentation (default: 1)")
    a("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
      help="where to train; auto tries cuda, then mps, then cpu (default: auto)")
    a("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
      help="auto: bf16/fp16 mixed precision where the hardware does it fast, else fp32 (default: auto)")
    a("--compile", action="store_true", help="torch.compile the model (slower start; see README)")
    a("--data-dir", default="mnist", help="where MNIST is stored or downloaded to (default: mnist)")
    a("--mirror", default=None,
      help="folder with the four MNIST .gz files, or an http(s) URL prefix, tried before the "
           "official mirrors (default: $MNIST_MIRROR)")
    a("--val-size", type=positive_int, default=5000, help="training images held out for validation (default: 5000)")
    a("--limit", type=positive_int, default=None, help="train on the first N training images only (quick checks)")
    a("--logdir", default="boardlog", help="TensorBoard folder (default: boardlog)")
    a("--run-name", default=None, help="subfolder of --logdir for this run (default: date, time and settings)")
    a("--checkpoint", default="net.pth", help="where the best model is saved (default: net.pth)")
    a("--resume", nargs="?", const="latest", default=None, metavar="RUN",
      help="continue an interrupted run (a run name or folder; default: the latest run in --logdir)")
    args = p.parse_args(argv)
    if args.weight_decay is None:
        # AdamW's decay is decoupled from the gradient and scaled by the lr: 0.05 is mild and helps
        # generalisation (measured: README). As an L2 penalty in sgd or adam, 0.05 would be far too strong.
        args.weight_decay = 0.05 if args.optimizer == "adamw" else 0.0
    if args.batchnorm is None:
        # Augmented runs train 20 epochs on harder images; batch norm lifts their median ~0.07% and
        # narrows the spread between seeds (measured: README). The short runs meet their targets
        # without it, and it makes each epoch ~9% slower on a CPU.
        args.batchnorm = args.augment and "batchnorm" in options_of(args.model)
    return args


# ---------------------------------------------------------------------------- setup

def load_data(args, device):
    """Read MNIST once and return normalised tensors on `device`: train, val and test (x, y)."""
    images, labels = load_split(True, args.data_dir, args.mirror)
    (tx, ty), (vx, vy) = split_train_val(images, labels, args.val_size)
    if args.limit:
        tx, ty = tx[:args.limit], ty[:args.limit]
    test_x, test_y = load_split(False, args.data_dir, args.mirror)
    return {name: (normalize(x).to(device), y.to(device))
            for name, (x, y) in {"train": (tx, ty), "val": (vx, vy), "test": (test_x, test_y)}.items()}


def options_of(model):
    """The option names a net of net.MODELS takes (none for the fixed lab nets)."""
    return inspect.signature(MODELS[model]).parameters


def model_options(args):
    """The options that rebuild the net; only those that differ from the defaults are stored."""
    opts = {}
    if args.dropout:
        opts["dropout"] = args.dropout
    if args.batchnorm:
        opts["batchnorm"] = True
    for name in opts:
        if name not in options_of(args.model):
            raise UserError(f"--model {args.model} has no {name} option: leave out --{name}")
    return opts


def make_optimizer(args, params, device):
    # fused: one kernel updates every parameter, instead of several per tensor (CPU and CUDA only).
    fused = device.type in ("cpu", "cuda") or None
    if args.optimizer == "adam":
        # beta2 0.99 instead of 0.999: the second-moment estimate adapts faster,
        # which helps in short, high-lr runs like ours.
        return torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay, fused=fused)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay, fused=fused)
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                               weight_decay=args.weight_decay, fused=fused)
    if args.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return torch.optim.Adadelta(params, lr=args.lr, weight_decay=args.weight_decay)


def make_scheduler(args, optimizer, steps_per_epoch):
    """Returns (scheduler or None, whether it steps every batch rather than every epoch)."""
    total = args.epochs * steps_per_epoch
    if args.scheduler == "onecycle":
        # Warm up over the first 25% of steps, then anneal to ~0: converges fast and lands softly.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total,
                                                   pct_start=0.25), True
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if args.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma), False
    return None, False


def default_run_name(args):
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{args.model}_{args.optimizer}_lr{args.lr:g}_bs{args.batch_size}"


def find_run(logdir, resume):
    """The run folder that --resume names: a folder, a name under logdir, or the latest run."""
    if resume == "latest":
        states = sorted(Path(logdir).glob(f"**/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
        if not states:
            raise UserError(f"nothing to resume: no {STATE_FILE} under {logdir}/ (start with python train.py)")
        return states[-1].parent
    for run_dir in (Path(resume), Path(logdir) / resume):
        if (run_dir / STATE_FILE).is_file():
            return run_dir
    raise UserError(f"nothing to resume at {resume}: no {STATE_FILE} there or under {logdir}/{resume}")


def resumed_args(args):
    """Training settings come from the saved state; only where to run and read data from may change."""
    run_dir = find_run(args.logdir, args.resume)
    state = load_file(run_dir / STATE_FILE, what="resume state", hint="start a new run instead")
    saved = dict(state["args"])
    for keep in ("device", "data_dir", "mirror", "resume"):
        saved[keep] = getattr(args, keep)
    saved["run_dir"] = str(run_dir)
    return argparse.Namespace(**saved), state


def hparams_of(args):
    keys = ["model", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "scheduler",
            "step_size", "gamma", "label_smoothing", "augment", "dropout", "batchnorm", "seed", "precision",
            "limit", "val_size"]
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
            for k in keys for v in [getattr(args, k, None)]}


def fmt_time(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------------------- training

def train_step(model, optimizer, scaler, x, y, args, device, precision, weight=1.0):
    """One optimisation step on one batch. Returns (loss, logits), left on the device.

    `weight` scales the loss that is differentiated: under torchrun, this process's share of the
    batch over an even share, so that DDP's average of the processes' gradients is exactly the
    gradient of the whole batch's mean loss, even when the batch does not split evenly.
    """
    with autocast(device, precision):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss * weight).backward()  # with fp32/bf16 the scaler is disabled: plain backward and step
    scaler.step(optimizer)
    scaler.update()
    return loss, logits


def train_one_epoch(model, optimizer, scheduler, per_batch, x_all, y_all, args, device, precision,
                    generator, epoch, aug_generator=None, scaler=None, rank=0, world=1):
    """One pass over the training tensors. Returns (mean loss, accuracy) as Python floats.

    `generator` (CPU) shuffles; `aug_generator` (on the device) draws the augmentation;
    `scaler` is a GradScaler, needed for fp16 only (bf16 has fp32's range). Under torchrun,
    process `rank` of `world` trains on its share of each batch, and the results are the whole batch's.
    """
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    distributed.seed_epoch(args.seed, epoch, aug_generator)
    model.train()
    loss_sum = torch.zeros((), device=device)  # summed on the device: no GPU sync per step
    correct = torch.zeros((), device=device, dtype=torch.long)
    order = batches(len(x_all), args.batch_size, generator, device)
    # Rank 0's bar shows the running loss and accuracy of its share: a sample of every batch.
    bar = tqdm(order, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=False,
               disable=not sys.stderr.isatty() or rank != 0, dynamic_ncols=True)
    seen = 0
    for step, idx in enumerate(bar):
        # Every process drew the same permutation (same seed), so their shares of the batch never
        # overlap and together make all of it, without a message between them. One process: all of it.
        mine = idx[rank::world]
        x, y = x_all[mine], y_all[mine]
        if args.augment:
            x = augment(x, aug_generator)
        loss, logits = train_step(model, optimizer, scaler, x, y, args, device, precision,
                                  weight=len(mine) * world / len(idx))
        if scheduler is not None and per_batch:
            scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if not bar.disable and step % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    if scheduler is not None and not per_batch:
        scheduler.step()
    loss_sum, correct, seen = distributed.sum_over_processes(loss_sum, correct, seen)  # the whole data set's
    return loss_sum / seen, correct / seen


def train(args, data=None):
    """Run a whole training as `args` says. `data` (from load_data) may be passed in to reuse it.

    Returns a summary dict; summary["interrupted"] is True after Ctrl-C.
    """
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

    import board
    from metrics import evaluate

    t_start = time.perf_counter()
    state = None
    if args.resume:
        args, state = resumed_args(args)
    threads = use_all_cores()
    keep_freed_memory()  # see common.py: twice the speed in the first epoch on CPU
    device, rank, world = distributed.setup(pick_device(args.device))  # under torchrun: process `rank` of `world`
    precision = pick_precision(args.precision, device)
    args.precision = precision
    if Path(args.checkpoint).is_dir():
        raise UserError(f"--checkpoint {args.checkpoint} is a folder: give a file name, e.g. net.pth")
    make_folder(Path(args.checkpoint).parent, "--checkpoint")  # now, not after the first epoch's training
    make_folder(args.logdir, "--logdir")
    opts = model_options(args)  # before loading data: a wrong option fails at once
    print(f"Using {device} device" + (f" ({threads} threads)" if device.type == "cpu" else "")
          + f", {precision} precision" + (f", {world} processes (torchrun)" if distributed.launched() else ""))

    if data is None:
        data = distributed.first_on_each_machine(load_data, args, device)
    (tx, ty), (vx, vy), (sx, sy) = data["train"], data["val"], data["test"]
    distributed.check_split(len(tx), args.batch_size, world)

    torch.manual_seed(args.seed)
    model = build_model(args.model, **opts).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(args, model.parameters(), device)
    steps_per_epoch = math.ceil(len(tx) / args.batch_size)
    scheduler, per_batch = make_scheduler(args, optimizer, steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)  # shuffling
    aug_generator = torch.Generator(device=device).manual_seed(args.seed)  # augmentation, on the device
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    start_epoch, best = 0, {"val_acc": -1.0, "epoch": 0, "test_acc": None}

    if state is not None:
        run_dir = Path(args.run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        aug_generator.set_state(state["aug_generator"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        start_epoch, best = state["epoch"], dict(state["best"])
        if start_epoch >= args.epochs:
            raise UserError(f"run {run_dir} already finished all {args.epochs} epochs; "
                            f"its best model is in {args.checkpoint}")
        print(f"Resuming {run_dir} after epoch {start_epoch} (best so far: epoch {best['epoch']}, "
              f"val {100 * best['val_acc']:.2f}%)")
    else:
        args.run_name = args.run_name or default_run_name(args)
        run_dir = Path(args.logdir) / args.run_name
        if (run_dir / STATE_FILE).exists():
            raise UserError(f"run {run_dir} exists already: continue it with --resume {run_dir}, "
                            "or pick another --run-name")
    args.run_dir = str(run_dir)

    print(f"{args.model}: {count_parameters(model):,} parameters; training on {len(tx):,} images, "
          f"validating on {len(vx):,}, testing on {len(sx):,}; logging to {run_dir}")

    # purge_step drops any events logged after the saved state, so resumed curves carry on unbroken.
    writer = SummaryWriter(str(run_dir), purge_step=start_epoch + 1 if state else None) if rank == 0 else None
    if rank == 0:
        board.log_start(writer, resumed_after=start_epoch if state else None)
    if state is None and rank == 0:
        try:
            with warnings.catch_warnings():  # add_graph traces with torch.jit, which warns it is deprecated
                warnings.simplefilter("ignore")
                # Traced here, because add_graph's own trace checks itself, and the check's imports
                # alone take 0.7 s; given a traced model, add_graph logs the same graph as is.
                writer.add_graph(torch.jit.trace(model, vx[:2], check_trace=False), vx[:2])
        except Exception as e:  # the graph is a nicety; never fail a run for it
            print(f"(model graph not logged: {type(e).__name__})")
    step_model = distributed.wrap(model, device)  # after the graph's trace, which must not run a collective
    step_model = torch.compile(step_model) if args.compile else step_model

    saved_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    interrupted, done = False, start_epoch  # done: the last epoch whose state is saved
    best_test = None  # the best epoch's test evaluation, for board.log_final
    train_time = 0.0  # seconds spent in the training loops alone (bench.py's throughput)
    try:
        for epoch in range(start_epoch + 1, args.epochs + 1):
            t0 = time.perf_counter()
            train_loss, train_acc = train_one_epoch(step_model, optimizer, scheduler, per_batch, tx, ty, args, device,
                                                    precision, generator, epoch, aug_generator, scaler, rank, world)
            train_secs = time.perf_counter() - t0
            train_time += train_secs
            if rank != 0:  # rank 0 alone evaluates, logs and saves; the others go on to the next epoch
                done = epoch
                continue
            with distributed.all_cores_while_others_wait():
                val = evaluate(model, vx, vy, precision=precision)
                test = evaluate(model, sx, sy, precision=precision)  # watched, never used to choose
            lr = optimizer.param_groups[0]["lr"]
            for tag, value in [("loss/train", train_loss), ("accuracy/train", train_acc),
                               ("loss/val", val["loss"]), ("accuracy/val", val["accuracy"]),
                               ("accuracy/test", test["accuracy"]), ("lr", lr),
                               ("time/epoch_seconds", train_secs)]:  # training only, for report.py
                writer.add_scalar(tag, value, epoch)
            board.log_epoch(writer, epoch, model, vx, vy, val)  # pictures, histograms: see board.py
            writer.flush()

            improved = val["accuracy"] > best["val_acc"]
            if improved:
                best, best_test = {"val_acc": val["accuracy"], "epoch": epoch, "test_acc": test["accuracy"]}, test
                atomic_save(make_checkpoint(model, args.model, opts, epoch=epoch, val_acc=val["accuracy"],
                                            val_loss=val["loss"], test_acc=test["accuracy"],
                                            normalization={"mean": MEAN, "std": STD}, args=saved_args),
                            args.checkpoint)
            atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "generator": generator.get_state(), "aug_generator": aug_generator.get_state(),
                         "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                         "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                         "epoch": epoch, "best": best, "args": saved_args}, run_dir / STATE_FILE)
            done = epoch
            secs = time.perf_counter() - t0
            print(f"epoch {epoch:>2}/{args.epochs}  train loss {train_loss:.4f} acc {100 * train_acc:.2f}%  "
                  f"val loss {val['loss']:.4f} acc {100 * val['accuracy']:.2f}%  "
                  f"test acc {100 * test['accuracy']:.2f}%  {secs:.1f} s  {len(tx) / train_secs:,.0f} img/s"
                  + ("  * saved" if improved else ""), flush=True)
    except (KeyboardInterrupt, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not distributed.peer_stopped(e):
            raise
        interrupted = True  # Ctrl-C, or under torchrun another process stopped first

    wall = time.perf_counter() - t_start
    summary = {"run_dir": str(run_dir), "checkpoint": args.checkpoint, "best_epoch": best["epoch"],
               "best_val_acc": best["val_acc"], "test_acc": best["test_acc"], "seconds": wall,
               "interrupted": interrupted, "epochs": args.epochs,
               "train_seconds": train_time, "train_images": len(tx) * (done - start_epoch)}
    if rank != 0:
        return summary  # rank 0 reports, and alone holds the writer
    if interrupted:
        writer.close()
        print(f"\nInterrupted during epoch {done + 1}.", file=sys.stderr)
        if best["epoch"]:
            print(f"The best model so far (epoch {best['epoch']}, val {100 * best['val_acc']:.2f}%) "
                  f"is kept in {args.checkpoint}; logs are in {run_dir}.", file=sys.stderr)
        if done > 0:
            print(f"Resume from epoch {done + 1} with: python train.py --resume {run_dir}", file=sys.stderr)
        else:
            print("No epoch finished, so there is nothing to resume: run python train.py again.", file=sys.stderr)
        return summary

    board.log_final(writer, args.epochs, args.checkpoint, sx, sy, precision, best_test)  # the best model, on test
    writer.add_hparams(hparams_of(args), {"hparam/best_val_acc": best["val_acc"],
                                          "hparam/test_acc": best["test_acc"],
                                          "hparam/best_epoch": best["epoch"]}, run_name=".")
    writer.close()
    print(f"\nBest validation accuracy {100 * best['val_acc']:.2f}% at epoch {best['epoch']}; "
          f"test accuracy of that model {100 * best['test_acc']:.2f}%.")
    print(f"Saved to {args.checkpoint}. Wall time {fmt_time(wall)}.")
    print(f"Evaluate it:  python test.py --checkpoint {args.checkpoint}")
    print(f"Curves:       tensorboard --logdir {args.logdir}")
    return summary


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = train(args)
    except RuntimeError as e:
        if not distributed.peer_stopped(e):
            raise
        return 1  # another process of the run failed before training began: torchrun names it
    finally:
        distributed.cleanup()
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    run_script(main)
