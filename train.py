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
train(), which runs the epochs; last, the training state that last.pt holds. The machinery around it
(resuming, torchrun, TensorBoard's pictures, saving safely) is one call each into the lab/ package.
"""

import copy
import functools
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lab import augment, board, calibration, distributed, runs, settings
from lab.checkpoint import make_checkpoint, save_checkpoint
from lab.cli import run_script
from lab.data import load_data, training_batches
from lab.device import autocast
from lab.metrics import evaluate
from lab.progress import EpochSteps
from net import build_model


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
        return torch.optim.SGD(
            params,
            lr=args.lr,
            momentum=args.momentum,
            nesterov=args.nesterov and args.momentum > 0,
            weight_decay=args.weight_decay,
            fused=fused,
        )
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
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=args.lr,
            total_steps=total,
            pct_start=0.25 if total <= 2 else max(0.25, 2 / total),
            cycle_momentum=momentum,
        ), True
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


def train_step(model, optimizer, scaler, loss_fn, batch, precision):
    """One optimisation step on one batch: images, labels and the weight of this process's share (torchrun:
    see lab/data.py's training_batches). Returns (loss, logits), left on the device: reading them here would
    make a GPU wait for the step to finish. `scaler` is a GradScaler, needed for fp16 only; with fp32 and
    bf16 it does nothing.
    """
    x, y, weight = batch
    with autocast(x.device, precision):  # bf16/fp16 matmuls and convs where it pays; weights stay fp32
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss * weight).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, logits


def train_one_epoch(model, state, loss_fn, batches, progress, precision):
    """One pass over the training batches, moving the training state (below): its optimiser, scaler, schedule
    and average. `model` runs the steps: the state's model, or DDP's or torch.compile's wrapper of it. Returns
    the epoch's first measurements, over every process's images."""
    model.train()
    loss_sum = 0  # the sums become tensors on the device: no GPU sync per step
    correct = 0
    seen = 0
    for step, batch in enumerate(batches):
        lr = state.optimizer.param_groups[0]["lr"]  # the rate of this step (a number on the CPU: no sync)
        loss, logits = train_step(model, state.optimizer, state.scaler, loss_fn, batch, precision)
        state.after_step(progress.first + step + 1)  # the schedule and the average (--ema), if any
        y = batch[1]
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        progress.step(step, loss_sum, correct, seen)  # the bar, and every --log-every steps a point
    progress.close()
    state.after_epoch()
    loss_sum, correct, seen = distributed.sum_over_processes(loss_sum, correct, seen)  # the whole data set's
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr, "images": seen}


def measure(model, data, precision):
    """Validation and test of `model` (what is judged: the model, or its average), read at the temperature that
    makes validation's probabilities honest (lab/calibration.py): saved with the checkpoint, and every probability
    shown from here on is read at it. The test set is watched, never used to choose."""
    vx, vy = data["val"]
    sx, sy = data["test"]
    with distributed.all_cores_while_others_wait():
        val = evaluate(model, vx, vy, precision=precision)
        test = evaluate(model, sx, sy, precision=precision)
    temperature = calibration.fit_temperature(val["probabilities"], vy)
    return calibration.at(val, vy, temperature), calibration.at(test, sy, temperature)


def scores(val, test):
    """What an epoch's metrics show of validation and test."""
    return {
        "val_loss": val["loss"],
        "val_acc": val["accuracy"],
        "test_acc": test["accuracy"],
        "temperature": test["temperature"],
        "test_ece": test["calibration"]["ece"],
    }


def best_checkpoint(model, args, settings_record, metrics):
    """net.pth's dict: the weights of `model` (the judged one), what rebuilds it, the settings, and the epoch's
    figures with the temperature fitted on validation."""
    meta = {key: metrics[key] for key in ("epoch", "val_acc", "val_loss", "test_acc", "temperature")}
    return make_checkpoint(model, args.model, settings.model_options(args), settings_record, meta)


def epoch_line(metrics, epochs):
    """The line printed after each epoch, from the same metrics that TensorBoard is given."""
    return (
        f"epoch {metrics['epoch']:>2}/{epochs}  "
        f"train loss {metrics['train_loss']:.4f} acc {100 * metrics['train_acc']:.2f}%  "
        f"val loss {metrics['val_loss']:.4f} acc {100 * metrics['val_acc']:.2f}%  "
        f"test acc {100 * metrics['test_acc']:.2f}%  {metrics['wall_seconds']:.1f} s  "
        f"{metrics['images'] / metrics['seconds']:,.0f} img/s" + ("  * saved" if metrics["saved"] else "")
    )


def train(args, data=None):
    """Run a whole training as `args` (lab.settings.parse) say; `data` (lab.data.load_data) may be passed in.
    Returns a summary dict; summary["interrupted"] is True after Ctrl-C."""
    with runs.start(args) as run:  # resume?, device, precision, torchrun, folders, --checkpoint's lock: lab/runs.py
        args = run.args  # a resumed run's own settings
        data = data or distributed.first_on_each_machine(load_data, args, run.device)
        n_train = len(data["train"][0])
        steps = distributed.steps_per_epoch(n_train, args.batch_size, run.world)
        state = make_state(args, run.device, run.precision, steps, run.saved)  # a resumed run's from last.pt
        first_epoch, train_seconds = state.epoch, 0.0  # this process's, for the summary
        loss_fn = make_loss(args)
        augmenter = augment.make(args, state.augment_rng)  # None without --augment
        every = (args.log_every, args.eval_every)  # steps between a point of the per-step curves, and a validation
        validate = functools.partial(evaluate, state.average, *data["val"], precision=run.precision)  # --eval-every
        run.say_start(state.model, data)
        board_ = board.Board(run.dir if run.rank == 0 else None, state.model, data, state.epoch, steps)  # rank 0's
        model = distributed.wrap(state.model, run.device)  # DDP under torchrun, else the model itself
        model = torch.compile(model) if args.compile else model
        with runs.stoppable() as stopped:
            for epoch in range(state.epoch + 1, args.epochs + 1):
                t0 = time.perf_counter()
                distributed.seed_epoch(args.seed, epoch, state.augment_rng)
                batches = training_batches(
                    data["train"], args.batch_size, state.shuffle, augmenter, run.rank, run.world
                )
                progress = EpochSteps(epoch, args.epochs, steps, board_.steps, every, validate)
                metrics = {"epoch": epoch, **train_one_epoch(model, state, loss_fn, batches, progress, run.precision)}
                metrics["seconds"] = time.perf_counter() - t0 - progress.eval_seconds  # training alone
                state.epoch = epoch
                train_seconds += metrics["seconds"]
                if run.rank != 0:
                    continue  # under torchrun, rank 0 alone evaluates, logs and saves
                val, test = measure(state.average, data, run.precision)
                metrics.update(scores(val, test), saved=val["accuracy"] > state.best["val_acc"])  # validation picks
                board_.log_epoch(metrics, val, test)  # first: a full disk there leaves the files below unchanged
                if metrics["saved"]:  # the best epoch so far: its weights (or their average) become net.pth
                    state.best = {"val_acc": val["accuracy"], "epoch": epoch, "test_acc": test["accuracy"]}
                    save_checkpoint(best_checkpoint(state.average, args, run.settings_record, metrics), args.checkpoint)
                run.save(state)  # last.pt: all that --resume needs
                metrics["wall_seconds"] = time.perf_counter() - t0
                print(epoch_line(metrics, args.epochs), flush=True)
        if run.rank == 0:  # the end: the best model on the test set in TensorBoard, and what to do next
            board_.finish(stopped.interrupted, state.best, args.checkpoint, run.settings_record)
            run.say_end(state.best, state.epoch, stopped.interrupted)
        return run.summary(state.best, stopped.interrupted, train_seconds, (state.epoch - first_epoch) * n_train)


# ---------------------------------------------------------------- the training state: what last.pt holds


def make_state(args, device, precision, steps, saved=None):
    """A new run's training state, as `args` say, on `device`, with `steps` steps an epoch; or, given `saved` (what
    last.pt held: lab/runs.py), a resumed run's. Seeds the global generator first: the net's first weights come
    from it."""
    torch.manual_seed(args.seed)
    model = build_model(args.model, **settings.model_options(args)).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(args, model.parameters(), device)
    scheduler, per_batch = make_scheduler(args, optimizer, steps)
    # The scaler keeps fp16's small gradients from vanishing; bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    average, update_average = make_average(args, model)  # what is validated, tested and saved
    state = TrainingState(model, optimizer, scheduler, scaler, average, seed=args.seed)
    state.per_batch, state.update_average = per_batch, update_average  # how they move: not saved
    if saved is not None:
        state.load_state_dict(saved)
    return state


@dataclass
class TrainingState:
    """All that last.pt holds: the model, the optimiser that changes it, the schedule of its learning rate, the fp16
    scaler, the averaged weights, the random generators (made from `seed`), the epochs done and the best so far
    (chosen on validation); with the global random states, in state_dict() and load_state_dict(), as torch's own
    objects have them. per_batch and update_average say how the schedule and the average move: not saved, they
    follow from the settings (make_state)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch.optim.lr_scheduler, or None
    scaler: torch.amp.GradScaler
    average: torch.nn.Module  # the model itself, or with --ema the average of its weights (make_average)
    seed: int
    epoch: int = 0  # epochs done
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "epoch": 0, "test_acc": None})
    per_batch: bool = False  # whether the schedule steps every batch rather than every epoch
    update_average: object = None  # make_average's: after step t of the run (--ema)

    def __post_init__(self):
        self.shuffle = torch.Generator().manual_seed(self.seed)  # the order of the training images
        device = next(self.model.parameters()).device
        self.augment_rng = torch.Generator(device=device).manual_seed(self.seed)  # on the device: no copies

    def after_step(self, t):
        """After step t of the run: the schedule, if it moves every step, and the average (--ema)."""
        if self.per_batch:
            self.scheduler.step()
        if self.update_average is not None:
            self.update_average(t)

    def after_epoch(self):
        if self.scheduler is not None and not self.per_batch:
            self.scheduler.step()

    def state_dict(self):
        # The keys are last.pt's since version 2 of its format: runs saved before this class still resume.
        return {
            "epoch": self.epoch,
            "best": self.best,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "generator": self.shuffle.get_state(),
            "aug_generator": self.augment_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "average": self.average.state_dict() if self.average is not self.model else None,
            "cuda_rng": torch.cuda.get_rng_state() if self.augment_rng.device.type == "cuda" else None,
        }

    def load_state_dict(self, saved):
        self.epoch = saved["epoch"]
        self.best = dict(saved["best"])
        self.model.load_state_dict(saved["model"])
        if self.average is not self.model:
            self.average.load_state_dict(saved["average"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"]:  # none where the run trained in bf16 or fp32: resumed in fp16, the scale starts afresh
            self.scaler.load_state_dict(saved["scaler"])
        self.shuffle.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["aug_generator"].numel() != self.augment_rng.get_state().numel():
            self.reseed_device(saved["epoch"])  # saved on another kind of device
        else:
            self.augment_rng.set_state(saved["aug_generator"])
        if self.augment_rng.device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"])

    def reseed_device(self, epoch):
        """A run saved on another kind of device (a CUDA generator's state is 16 bytes, a CPU one's 5,056) cannot
        go on with its device's random numbers: the augmentation's generator and the device's own (dropout)
        start again from (seed, epoch) alone, as each epoch's do under torchrun (lab/distributed.py)."""
        seed = (self.seed * 1_000_000 + epoch * 1_000) % 2**63
        self.augment_rng.manual_seed(seed)
        if self.augment_rng.device.type != "cpu":  # the CPU's own came back from torch_rng
            torch.get_device_module(self.augment_rng.device).manual_seed(seed)
        print(
            f"Note: the run was saved on another kind of device: its augmentation's random numbers start again "
            f"from its seed ({self.seed}) and epoch ({epoch}) on this {self.augment_rng.device.type} device"
        )


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
