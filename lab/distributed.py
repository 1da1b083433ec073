"""Data-parallel training under torchrun: the few steps that differ from one process.

    torchrun --standalone --nproc_per_node 4 train.py       # 4 GPUs, or 4 processes sharing the CPU

torchrun starts the processes and tells each its RANK (0 .. WORLD_SIZE-1) and its LOCAL_RANK on
its machine. Every process holds the whole model and data set and trains on its share of every
batch; DistributedDataParallel (DDP) averages the gradients across processes during backward, so
every copy of the model takes the same step. Rank 0 alone evaluates, prints, writes TensorBoard
and saves; the others only train. Started without torchrun, none of this does anything.
"""

import contextlib
import datetime
import math
import os
import signal
import sys

import torch
import torch.distributed as dist

from lab.cli import UserError


def launched():
    """True when torchrun started this process (it sets RANK, LOCAL_RANK and WORLD_SIZE)."""
    return "RANK" in os.environ


def setup(device):
    """Join torchrun's process group. Returns (device, rank, world size); (device, 0, 1) without torchrun."""
    if not launched():
        return device, 0, 1
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.type == "cuda"
    if device.type == "mps":
        raise UserError(
            "torchrun needs CUDA GPUs or the CPU (Gloo cannot add up tensors on an Apple GPU): "
            "add --device cpu, or run python train.py"
        )
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started more processes than this machine has GPUs "
                f"({torch.cuda.device_count()}): use --nproc_per_node {torch.cuda.device_count()}"
            )
        device = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    # When one process fails, torchrun stops the others with SIGTERM: make that the same clean stop
    # as Ctrl-C (KeyboardInterrupt: net.pth and last.pt stay as they were, and no traceback).
    signal.signal(signal.SIGTERM, _interrupt)
    # A peer that stops normally closes its connections, and the others' next collective fails at
    # once. The timeout is for one that vanishes silently (a machine that lost power): long enough
    # for rank 0 to evaluate and save while the others wait for it.
    name = backend(device)
    dist.init_process_group(name, device_id=device if name == "nccl" else None, timeout=datetime.timedelta(minutes=10))
    if rank != 0:
        sys.stdout = open(os.devnull, "w")  # rank 0 reports; the others' prints go nowhere
    return device, rank, dist.get_world_size()


def backend(device, nccl_available=None):
    """NCCL for GPUs where torch has it (Linux), else Gloo: Windows builds of torch have no NCCL, and Gloo
    adds up GPU tensors too, slower. nccl_available: None for this torch; True or False to ask (the tests)."""
    if nccl_available is None:
        nccl_available = dist.is_nccl_available()
    return "nccl" if device.type == "cuda" and nccl_available else "gloo"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def first_on_each_machine(fn, *args):
    """fn(*args) on each machine's first process, then on the others: e.g. MNIST is fetched once, not raced."""
    if launched() and int(os.environ["LOCAL_RANK"]) != 0:
        dist.barrier()
    result = fn(*args)
    if launched() and int(os.environ["LOCAL_RANK"]) == 0:
        dist.barrier()
    return result


def steps_per_epoch(n, batch_size, world):
    """The steps of an epoch of `n` images in batches of `batch_size`, split over `world` processes (checked)."""
    check_split(n, batch_size, world)
    return math.ceil(n / batch_size)


def check_split(n, batch_size, world):
    """Every process needs at least one image of every batch, the last one included."""
    smallest = n if n < batch_size else (n % batch_size or batch_size)
    if smallest < world:
        raise UserError(
            f"the smallest batch has {smallest} images, fewer than the {world} processes: "
            "change --batch-size or --limit"
        )


def wrap(model, device):
    """The model that training steps run: in DDP under torchrun, else the model itself.

    Evaluation and checkpoints keep using the plain `model` (the wrapper's .module): net.pth has
    the same keys as ever, with no 'module.' prefix, and loads in test.py and predict.py.
    """
    if not launched():
        return model
    cuda = device.type == "cuda"
    if cuda:
        # Batch norm normalises with its batch's statistics; SyncBatchNorm computes them over the
        # global batch, as one process would. It needs GPUs (torch 2.14 refuses CPU tensors), so on
        # the CPU each process normalises with its own share (README). It keeps the same parameters,
        # so the optimiser made before still holds them. A net without batch norm is left as it is.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)


@contextlib.contextmanager
def all_cores_while_others_wait():
    """Rank 0 evaluates with all of its machine's cores, not its share: the other processes are
    waiting for it (in their next step's gradient exchange), and waiting costs no CPU time.
    Measured on 2 cores: evaluating 15,000 images and saving took 3.1 s per epoch on rank 0's one
    thread, 1.6 s with both cores."""
    if not launched():
        yield
        return
    share = torch.get_num_threads()
    torch.set_num_threads(share * int(os.environ["LOCAL_WORLD_SIZE"]))
    try:
        yield
    finally:
        torch.set_num_threads(share)


def seed_epoch(seed, epoch, aug_generator):
    """Under torchrun, each process draws its augmentation and dropout from its own seed for each epoch.

    Made from (seed, epoch, rank) alone, so a run resumed with any number of processes draws
    what an uninterrupted run with that number would have drawn. Without torchrun, the one
    stream of random numbers goes on from epoch to epoch as it always has.
    """
    if launched():
        s = (seed * 1_000_000 + epoch * 1_000 + dist.get_rank()) % 2**63
        aug_generator.manual_seed(s)
        torch.manual_seed(s)


def sum_over_processes(*values):
    """Each value (a number or a one-number tensor) summed over every process, as Python numbers: one message."""
    if not launched():
        return [v.item() if torch.is_tensor(v) else v for v in values]
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL sends GPU tensors only
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def peer_stopped(error):
    """Whether `error` is what a collective raises once another process of the run has stopped.

    Gloo raises a RuntimeError naming its source file ('Connection closed by peer'), NCCL a DistError.
    """
    return launched() and (isinstance(error, dist.DistError) or "gloo" in str(error))


def cleanup(together=False):
    """Leave the process group. together: the run ended normally, so each process first waits for the
    others (rank 0 is still writing its last pictures when the others finish training): a process that
    tore its connections down while rank 0 was still busy was seen to abort ("terminate called without
    an active exception"), and torchrun then stopped rank 0 before it was done."""
    if dist.is_available() and dist.is_initialized():
        if together:
            try:
                dist.barrier()
            except RuntimeError as e:  # a peer that failed meanwhile: torchrun names it
                if not peer_stopped(e):
                    raise
        dist.destroy_process_group()
