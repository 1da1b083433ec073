"""Where and how fast the arithmetic runs: the device (cuda -> mps -> cpu), mixed precision, threads."""

import contextlib
import ctypes
import os
import warnings

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
    """Resolve --precision for `device`: precision_for() with what this machine's hardware and torch can do."""
    if device.type == "cuda":
        return precision_for(choice, "cuda", capability=torch.cuda.get_device_capability(device))
    if device.type == "mps":
        return precision_for(choice, "mps", mps_can=mps_precisions())
    return precision_for(choice, device.type, cpu_bf16=cpu_has_fast_bf16())


def precision_for(choice, kind, capability=(0, 0), mps_can=(), cpu_bf16=False):
    """--precision `choice` on a device of `kind` (cuda, mps, cpu) -> fp32, bf16 or fp16. Pure: the facts come in.

    auto takes what the hardware does fast without losing accuracy:
      cuda  compute capability 8.0 or newer (Ampere on): bf16, which has fp32's range and needs no scaler;
            7.0 to 7.9 (V100, T4, RTX 20xx): fp16 with the GradScaler, on the tensor cores (no bf16 in cuDNN);
            below 7.0 (GTX 10xx): fp32, since their fp16 arithmetic is slower than fp32.
            (torch.cuda.is_bf16_supported() is no guide: it is True on a T4, which only emulates bf16.)
      mps   fp32: Apple's GPUs do fp16 arithmetic at fp32's rate, so mixed precision buys little there
            (and nothing here has measured it); --precision fp16 or bf16 where this torch's MPS autocast
            has it (`mps_can`: mps_precisions()), refused where it has not.
      cpu   bf16 where the CPU multiplies bf16 in hardware (`cpu_bf16`: AVX-512 BF16 or AMX), else fp32.
    A precision asked for that this device cannot run well is refused in one line, never run slowly in
    silence: bf16 on a GPU before 8.0 would fall back to slow kernels or fail mid-run; fp16 on a CPU.
    (bf16 on a CPU that only emulates it is allowed: slow, but it runs and rounds as bf16 does everywhere.)
    """
    if choice not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"unknown precision {choice!r}: use auto, fp32, bf16 or fp16")
    if choice == "auto":
        if kind == "cuda":
            return "bf16" if capability >= (8, 0) else "fp16" if capability >= (7, 0) else "fp32"
        return "bf16" if kind == "cpu" and cpu_bf16 else "fp32"
    if choice == "fp16" and kind == "cpu":
        raise UserError("--precision fp16 is for GPUs; on a CPU use bf16 or fp32")
    if choice == "bf16" and kind == "cuda" and capability < (8, 0):
        raise UserError(
            f"--precision bf16 needs a GPU of compute capability 8.0 or newer; this one is "
            f"{capability[0]}.{capability[1]}, which only emulates bf16: use --precision auto or fp32"
        )
    if choice != "fp32" and kind == "mps" and choice not in mps_can:
        raise UserError(
            f"--precision {choice} does not train on this Apple GPU (bf16 needs torch 2.6 and macOS 14; "
            f"fp16's convolution gradients fail on MPS): use --precision auto or fp32"
        )
    return choice


def mps_precisions():
    """The mixed precisions this torch runs on an Apple GPU, asked of torch where it says: {'fp16', 'bf16'} or less.

    torch.autocast refuses device 'mps' where it has no MPS autocast (torch 2.4), and warns and turns itself
    off for a dtype it lacks there (bf16 before torch 2.6; on macOS 13 until torch stopped checking).
    bf16 tensors on MPS need macOS 14. fp16 is not offered (below).
    """
    can = set()
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                torch.autocast("mps", dtype=dtype)
            except RuntimeError:  # no MPS autocast at all
                return set()
        if not caught:
            can.add(name)
    if not torch.backends.mps.is_macos_or_newer(14, 0):
        can.discard("bf16")
    # fp16 is never offered: torch's own MPS tests skip conv2d's backward in float16 ("destination datatype
    # must be fp32", common_mps.py's SKIPLIST_GRAD; pytorch issue 119108, with channels-last as Net uses),
    # and its GradScaler unscales on MPS only from torch 2.8 (pytorch issue 142397). tests/test_mps.py
    # records a training step in every precision offered here against those lists.
    can.discard("fp16")
    return can


def autocast(device, precision):
    """Mixed-precision context: weights stay fp32, matmuls and convs run in bf16/fp16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
