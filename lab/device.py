"""Where and how fast the arithmetic runs: the device (cuda -> mps -> cpu), mixed precision, threads."""

import contextlib
import ctypes
import os

import torch

from lab.cli import UserError


def cores():
    """The cores this process may run on (which a container or taskset may limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def use_all_cores():
    """Use this process's share of the cores: all of them, or 1/N each for N processes from torchrun.

    OMP_NUM_THREADS, when set, has the last word: torchrun sets it to 1 for several processes
    (good for one process per GPU), sweep.py --jobs to each run's share of the cores.
    """
    n = os.environ.get("OMP_NUM_THREADS", "")
    n = int(n) if n.isdigit() and int(n) > 0 else max(1, cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(n)
    return n


def keep_freed_memory():
    """Stop glibc's malloc from giving each step's freed activations back to the operating system.

    A training step allocates and frees several blocks of ~5-15 MB. By default glibc serves blocks
    that size with fresh mmap()s, or trims the heap when they are freed, so every step page-faults
    its memory in again. Measured here (2 cores, bf16): the first epoch ran at 6,100 img/s and the
    later ones at 12,300, once evaluation's larger blocks had happened to raise glibc's dynamic
    thresholds. Fixed thresholds make every step fast; the cost is that up to 1 GiB of freed memory
    stays with the process for reuse. Returns False (and changes nothing) where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # macOS, Windows, musl
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30))


def pick_device(choice="auto"):
    """'auto' tries cuda, then mps (Apple GPUs), then cpu; any other value is checked."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if choice == "auto":
        return torch.device(next(name for name in ("cuda", "mps", "cpu") if has[name]))
    if choice not in has:
        raise UserError(f"unknown device {choice!r}: use auto, cuda, mps or cpu")
    if not has[choice]:
        raise UserError(f"--device {choice} was asked for but is not available here: use --device auto")
    return torch.device(choice)


def cpu_has_fast_bf16():
    """True when the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX); else bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(choice, device):
    """Resolve --precision. 'auto' takes what the hardware does fast without losing accuracy."""
    if choice == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_fast_bf16():
            return "bf16"
        return "fp32"
    if choice not in ("fp32", "bf16", "fp16"):
        raise UserError(f"unknown precision {choice!r}: use auto, fp32, bf16 or fp16")
    if choice == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 is for GPUs; on a CPU use bf16 or fp32")
    return choice


def autocast(device, precision):
    """Mixed-precision context: weights stay fp32, matmuls and convs run in bf16/fp16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
