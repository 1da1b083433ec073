"""Train a network on MNIST, log to TensorBoard, keep the best checkpoint.

    python train.py                        # the default run: 6 epochs of harder images, ~99.6% test accuracy
    python train.py --epochs 1             # one quick epoch, ~99.35%
    python train.py --recipe ours          # MNIST's images as they are: ~99.5%, a little quicker
    python train.py --recipe best          # 30 epochs of harder images, ~99.65%
    tensorboard --logdir boardlog          # watch the curves
    torchrun --standalone --nproc_per_node 2 train.py  # data-parallel: 2 GPUs, or 2 CPU processes

The 60,000 training images are split into 55,000 to train on and 5,000 to validate on. After every
epoch the network is evaluated on both held-out sets; the validation accuracy picks the best epoch,
whose weights are saved to net.pth, with the temperature that makes the net's probabilities honest
(fitted on validation too: lab/calibration.py). The 10,000 test images are measured every epoch so that you can
watch them in TensorBoard, but they never choose anything: choosing on the test set would make the
reported test accuracy optimistic.

Read from the top: the optimiser, the schedule and the loss; one training step; one epoch; then
train(), which builds the model and runs the epochs. The machinery around it (resuming, torchrun,
TensorBoard's pictures, saving safely) is one call each into the lab/ package.
"""
import copy
import functools
import math
import time

import torch
import torch.nn.functional as F

from lab import augment, board, calibration, distributed, runs, settings
from lab.checkpoint import make_checkpoint, save_checkpoint
from lab.cli import run_script
from lab.data import load_data, training_batches
from lab.device import autocast
from lab.metrics import evaluate
from lab.progress import EpochSteps
from net import build_model, count_parameters


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
        # Nesterov momentum looks one step ahead before it adds the gradient: a little faster, the same cost.
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0,
                               weight_decay=args.weight_decay, fused=fused)
    if args.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return torch.optim.Adadelta(params, lr=args.lr, weight_decay=args.weight_decay)


def make_scheduler(args, optimizer, steps_per_epoch):
    """Returns (scheduler or None, whether it steps every batch rather than every epoch)."""
    total = args.epochs * steps_per_epoch
    if args.scheduler == "onecycle":
        # Warm up over the first 25% of steps, then anneal to ~0: converges fast and lands softly.
        # (At least 2 steps of warm-up: OneCycleLR divides by the warm-up's length less one.) It also
        # cycles the momentum the other way, where the optimiser has one (adadelta has none).
        momentum = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total,
                                                   pct_start=0.25 if total <= 2 else max(0.25, 2 / total),
                                                   cycle_momentum=momentum), True
    if args.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if args.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma), False
    return None, False


def make_loss(args):
    """The training loss of logits and labels. (Evaluation always measures plain cross-entropy.)"""
    if args.loss == "mse":
        return functools.partial(mse_loss, label_smoothing=args.label_smoothing)
    # Cross-entropy: minus the log of the probability given to the right digit. Label smoothing
    # asks for 90% (at 0.1) instead of 100%, which keeps the network from becoming overconfident.
    return functools.partial(F.cross_entropy, label_smoothing=args.label_smoothing)


def mse_loss(logits, y, label_smoothing=0.0):
    """The squared distance between the softmax probabilities and the one-hot label, as lab reports
    compare with cross-entropy. Its gradient fades as a wrong answer grows confident, so it learns slower."""
    target = F.one_hot(y, logits.shape[1]).float() * (1 - label_smoothing) + label_smoothing / logits.shape[1]
    return F.mse_loss(logits.softmax(1), target)


def make_average(args, model):
    """What is validated, tested and saved: with --ema, an exponential moving average of the weights
    (and of batch norm's running statistics), else the model itself. Returns (that model, a function
    that updates it after step t of the run, or None).

    The average of the last few thousand steps sits in a wider, flatter part of the loss than the
    weights of any one step, and reads unseen digits a little better (docs/results.md). Early on it
    averages over fewer steps (a decay of at most (1 + t) / (10 + t)), or it would still hold the random
    weights of the start. The averaging is torch.optim.swa_utils's: one foreach lerp over every tensor.
    (Not its AveragedModel, whose update reads its step count off the device at every step: a GPU would
    wait for it.)
    """
    if not args.ema:
        return model, None
    from torch.optim.swa_utils import get_ema_multi_avg_fn  # here: only --ema needs it

    average = copy.deepcopy(model).requires_grad_(False)
    floats = lambda m: [t for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]  # noqa: E731
    ours, theirs = floats(average), floats(model)
    return average, lambda t: get_ema_multi_avg_fn(min(args.ema, (1 + t) / (10 + t)))(ours, theirs, None)


def train_step(model, optimizer, scaler, loss_fn, x, y, precision, weight=1.0):
    """One optimisation step on one batch. Returns (loss, logits), left on the device: reading them
    here would make a GPU wait for the step to finish.

    `weight` scales the loss that is differentiated (torchrun: see lab/data.py's training_batches).
    `scaler` is a GradScaler, needed for fp16 only; with fp32 and bf16 it does nothing.
    """
    with autocast(x.device, precision):  # bf16/fp16 matmuls and convs where it pays; weights stay fp32
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss * weight).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, logits


def train_one_epoch(model, optimizer, scheduler, per_batch, scaler, loss_fn, batches, precision, progress,
                    update_average=None):
    """One pass over the training batches. Returns (mean loss, accuracy) over every process's images, and
    the learning rate of the epoch's last step."""
    model.train()
    loss_sum = correct = seen = 0  # the sums become tensors on the device: no GPU sync per step
    for step, (x, y, weight) in enumerate(batches):
        lr = optimizer.param_groups[0]["lr"]  # the rate of this step (a number on the CPU: no sync)
        loss, logits = train_step(model, optimizer, scaler, loss_fn, x, y, precision, weight)
        if per_batch:
            scheduler.step()
        if update_average is not None:  # --ema
            update_average(progress.first + step + 1)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        progress.step(step, loss_sum, correct, seen)  # the bar, and every --log-every steps a point
    progress.close()
    if scheduler is not None and not per_batch:
        scheduler.step()
    loss_sum, correct, seen = distributed.sum_over_processes(loss_sum, correct, seen)  # the whole data set's
    return loss_sum / seen, correct / seen, lr


def train(args, data=None):
    """Run a whole training as `args` (from lab.settings.parse) say. `data` (lab.data.load_data) may be passed in.

    Returns a summary dict; summary["interrupted"] is True after Ctrl-C.
    """
    # resume?, threads, device, precision, torchrun, folders, and a lock on --checkpoint: lab/runs.py
    with runs.start(args) as run:  # leaving this block, however, frees --checkpoint for another run
        args, device = run.args, run.device
        if data is None:
            data = distributed.first_on_each_machine(load_data, args, device)
        (tx, ty), (vx, vy), (sx, sy) = data["train"], data["val"], data["test"]
        distributed.check_split(len(tx), args.batch_size, run.world)

        # The model, the optimiser that changes it, the schedule of its learning rate, and the loss.
        torch.manual_seed(args.seed)
        options = settings.model_options(args)
        model = build_model(args.model, **options).to(device).to(memory_format=torch.channels_last)
        optimizer = make_optimizer(args, model.parameters(), device)
        steps = math.ceil(len(tx) / args.batch_size)  # per epoch
        scheduler, per_batch = make_scheduler(args, optimizer, steps)
        loss_fn = make_loss(args)
        scaler = torch.amp.GradScaler(device.type, enabled=run.precision == "fp16")  # bf16 has fp32's range: no need
        judged, update_average = make_average(args, model)  # validated, tested and saved: the model or its average
        shuffle = torch.Generator().manual_seed(args.seed)
        augment_rng = torch.Generator(device=device).manual_seed(args.seed)  # drawn on the device: no copy per step
        augmenter = augment.make(args, augment_rng)  # None without --augment
        start, best = runs.restore(run, model, optimizer, scheduler, scaler, shuffle, augment_rng, judged)
        print(f"{args.model}: {count_parameters(model):,} parameters; training on {len(tx):,} images, "
              f"validating on {len(vx):,}, testing on {len(sx):,}; logging to {run.dir}")

        writer = board.open_run(run, start, model, tx, ty)  # rank 0's TensorBoard writer; None for the others
        step_writer = board.open_steps(run, start * steps)  # the same for the per-step curves
        step_model = distributed.wrap(model, device)  # DDP under torchrun, else the model itself
        step_model = torch.compile(step_model) if args.compile else step_model
        best_model = best_test = None  # the best epoch's checkpoint and test evaluation, made in this process
        done, train_seconds = start, 0.0
        with runs.stoppable() as stopped:
            for epoch in range(start + 1, args.epochs + 1):
                t0 = time.perf_counter()
                distributed.seed_epoch(args.seed, epoch, augment_rng)
                batches = training_batches(tx, ty, args.batch_size, shuffle, augmenter, run.rank, run.world)
                progress = EpochSteps(epoch, args.epochs, steps, args.log_every, step_writer, rank=run.rank,
                                      validate=lambda: evaluate(judged, vx, vy, precision=run.precision),
                                      eval_every=args.eval_every)
                train_loss, train_acc, lr = train_one_epoch(step_model, optimizer, scheduler, per_batch, scaler, loss_fn,
                                                        batches, run.precision, progress, update_average)
                seconds = time.perf_counter() - t0 - progress.eval_seconds  # training alone
                train_seconds, done = train_seconds + seconds, epoch
                if run.rank != 0:
                    continue  # under torchrun, rank 0 alone evaluates, logs and saves

                with distributed.all_cores_while_others_wait():
                    val = evaluate(judged, vx, vy, precision=run.precision)
                    test = evaluate(judged, sx, sy, precision=run.precision)  # watched, never used to choose
                # The temperature that makes validation's probabilities honest (lab/calibration.py): saved with
                # the checkpoint, and every probability shown from here on is read at it.
                temperature = calibration.fit_temperature(val["probabilities"], vy)
                val, test = calibration.at(val, vy, temperature), calibration.at(test, sy, temperature)
                board.log_epoch(writer, epoch, model, vx, vy, val, test, train_loss, train_acc, seconds,
                                lr=lr)
                improved = val["accuracy"] > best["val_acc"]
                if improved:  # keep the best model: chosen on validation
                    best = {"val_acc": val["accuracy"], "epoch": epoch, "test_acc": test["accuracy"]}
                    best_model = make_checkpoint(judged, args.model, options, run.record, epoch=epoch,
                                                 val_acc=val["accuracy"], val_loss=val["loss"],
                                                 test_acc=test["accuracy"], temperature=temperature)
                    best_test = test
                    save_checkpoint(best_model, args.checkpoint)
                runs.save_state(run, epoch, best, model, optimizer, scheduler, scaler, shuffle, augment_rng, judged)
                print(f"epoch {epoch:>2}/{args.epochs}  train loss {train_loss:.4f} acc {100 * train_acc:.2f}%  "
                      f"val loss {val['loss']:.4f} acc {100 * val['accuracy']:.2f}%  "
                      f"test acc {100 * test['accuracy']:.2f}%  {time.perf_counter() - t0:.1f} s  "
                      f"{len(tx) / seconds:,.0f} img/s" + ("  * saved" if improved else ""), flush=True)

        if run.rank == 0:  # the end: the best model on the test set in TensorBoard, and what to do next
            if stopped.interrupted:
                runs.say_interrupted(run, best, done)
            else:
                board.log_final(writer, run, best, best_model, best_test, model, sx, sy)
                runs.say_done(run, best)
            board.close(step_writer, run.dir)
            board.close(writer, run.dir)
        return runs.summary(run, best, done, start, train_seconds, len(tx), stopped.interrupted)


def main(argv=None):
    args = settings.parse(argv, __doc__)
    summary = None
    try:
        summary = train(args)
    except RuntimeError as e:
        if not distributed.peer_stopped(e):
            raise
        return 1  # another process of the run failed before training began: torchrun names it
    finally:
        distributed.cleanup(together=summary is not None and not summary["interrupted"])
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    run_script(main)
