"""Nothing in the default path that Apple's GPUs (MPS) lack, checked on the CPU.

We have no Mac here, so the lab's work is recorded at torch's dispatcher (TorchDispatchMode: every aten
operation, with the dtypes and shapes it is given) and each operation that would run on the device is
looked up in what MPS is known to lack:

- torch's own lists of what fails on MPS, read from the installed torch's
  torch/testing/_internal/common_mps.py (defined there only on a Mac, so read from its source with ast),
  keyed by OpInfo test names, mapped here to the aten operations those ops dispatch to (ATEN);
- limits documented with their shape or dtype rules: adaptive average pooling to a size that does not
  divide the input, and float64 in a tensor on the device (float64 on the host is fine).

What is recorded: a training step of each recipe with every augmentation flag on, evaluation and the
temperature fit (train.measure), lab/augment.coarser() at every grid size, reading/pages.read() of a
page, and what draw.py's /explain and /attack ask of inside/explain.py's Explainer.

It runs on the CPU, so where the code asks which device it is on, the test takes the MPS branch:
train.make_optimizer is told the device is mps (no fused optimiser there), the precision is what
lab/device.pick_precision gives for mps (with the CPU's autocast standing in for MPS's: both run the
convolutions and matrix products in the lower precision). Which tensors are "on the device": those the
test puts there when a recording starts (the net, the data), whatever an operation makes from one of them,
what a factory makes with device= a torch.device and what .to(a torch.device) moves. All others are on
the host: what .cpu() returns (a copy, as from a GPU), what a factory makes without a device (or with
device="cpu"), what comes from numpy, and what is made from host tensors alone. So float64 after .cpu(),
as in lab/calibration.py, is fine, and float64 before it is not.
"""
import ast
import collections
import contextlib
import functools
import io
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

COMMON_MPS = Path(torch.__file__).parent / "testing" / "_internal" / "common_mps.py"

# The lists of common_mps.py taken, by (function, name): those of what fails on MPS. Left out: UNDEFINED_XFAILLIST
# and EMPTY_OPS_SKIPLIST (results that differ from the CPU's by definition: uninitialised memory, random draws,
# sign choices), the sparse list, SUPPORTED_COMPLEX_OPS (what works) and the error-message lists.
TAKEN = {
    ("mps_ops_modifier", "UNIMPLEMENTED_XFAILLIST"): "not implemented on MPS",
    ("mps_ops_modifier", "ON_MPS_XFAILLIST"): "wrong on MPS",
    ("mps_ops_modifier", "SKIPLIST"): "unsupported on MPS",
    ("mps_ops_modifier", "MACOS_BEFORE_14_4_XFAILLIST"): "fails on MPS before macOS 14.4",
    ("mps_ops_modifier", "MACOS_BEFORE_15_0_XFAILLIST"): "fails on MPS before macOS 15",
    ("mps_ops_grad_modifier", "XFAILLIST_GRAD"): "its gradient fails on MPS",
    ("mps_ops_grad_modifier", "SKIPLIST_GRAD"): "its gradient is unsupported on MPS",
    ("mps_ops_grad_modifier", "ON_MPS_XFAILLIST"): "its gradient is wrong on MPS",
    ("mps_ops_grad_modifier", "MACOS_BEFORE_15_0_XFAILLIST_GRAD"): "its gradient fails on MPS before macOS 15",
}


def conv(dims, transposed=False):
    """Which calls of aten.convolution (and its backward) an OpInfo conv{dims}d (or conv_transpose) means."""

    def match(name, args):
        if name == "convolution":
            return len(args[0].shape) == dims + 2 and bool(args[6]) == transposed
        if name == "convolution_backward":
            return len(args[1].shape) == dims + 2 and bool(args[7]) == transposed
        return True  # conv2d, conv_transpose2d, ...: the name says it

    return match


def indivisible(name, args):
    """Adaptive pooling where an input size is not a multiple of the output size: MPS raises "Adaptive pool MPS:
    input sizes must be divisible by output sizes" (pytorch issue 96056; common_mps.py's own note says so)."""
    if name.endswith("_backward"):  # (grad_output, input): the output's size is grad_output's
        inputs, outputs = args[1].shape, args[0].shape[2:]
    else:
        inputs, outputs = args[0].shape, args[1]
    return any(size % out for size, out in zip(inputs[-len(outputs) :], outputs))


# OpInfo name -> (the aten operations its forward dispatches to, its backward's, which calls of them it means).
# An OpInfo name not here means the aten operation of the same name (nn.functional. left out, dots as _), and
# its gradient <name>_backward. Variants (e.g. log_softmaxwith_dtype, which means a dtype= argument) match
# nothing unless named here.
CONV = ("convolution", "convolution_backward")
ADAPTIVE_AVG_2D = (("_adaptive_avg_pool2d", "adaptive_avg_pool2d"), ("_adaptive_avg_pool2d_backward",), indivisible)
ATEN = {
    "nn.functional.conv1d": (("convolution", "conv1d"), CONV[1:], conv(1)),
    "nn.functional.conv2d": (("convolution", "conv2d"), CONV[1:], conv(2)),
    "nn.functional.conv3d": (("convolution", "conv3d"), CONV[1:], conv(3)),
    "nn.functional.conv_transpose1d": (("convolution", "conv_transpose1d"), CONV[1:], conv(1, True)),
    "nn.functional.conv_transpose2d": (("convolution", "conv_transpose2d"), CONV[1:], conv(2, True)),
    "nn.functional.conv_transpose3d": (("convolution", "conv_transpose3d"), CONV[1:], conv(3, True)),
    "nn.functional.linear": (("linear", "addmm", "mm"), (), None),
    "nn.functional.batch_norm": (("batch_norm", "native_batch_norm", "_native_batch_norm_legit"), (), None),
    "native_batch_norm": (("native_batch_norm", "_native_batch_norm_legit"), ("native_batch_norm_backward",), None),
    "nn.functional.max_pool2d": (("max_pool2d", "max_pool2d_with_indices"), (), None),
    "nn.functional.adaptive_avg_pool1d": (("adaptive_avg_pool1d",), (), indivisible),
    "nn.functional.adaptive_avg_pool2d": ADAPTIVE_AVG_2D,
    "nn.functional.interpolatearea": ADAPTIVE_AVG_2D,  # F.interpolate(mode="area") is adaptive_avg_pool2d
    "nn.functional.grid_sample": (("grid_sampler_2d", "grid_sampler"), ("grid_sampler_2d_backward",), None),
    "nn.functional.nll_loss": (("nll_loss_forward", "nll_loss", "nll_loss_nd"), ("nll_loss_backward",), None),
    "nn.functional.interpolatebicubic": (("upsample_bicubic2d",), ("upsample_bicubic2d_backward",), None),
}
FLOAT64 = (torch.float64, torch.complex128)
# Entries of torch's lists that say nothing of what MPS lacks, and why.
EXCUSED = {
    # OpInfo "to" samples conversions to float64 and between devices: the float64 rule below covers those; a
    # conversion between dtypes MPS has (float32, float16, bfloat16, int64, bool) is what every MPS program does.
    "to": "its samples convert to float64",
}

Entry = collections.namedtuple("Entry", "opinfo aten dtypes match why source")


def aten_names(opinfo, backward):
    if opinfo in ATEN:
        forward_names, backward_names, match = ATEN[opinfo]
        return (backward_names if backward else forward_names), match
    name = opinfo.removeprefix("nn.functional.").replace(".", "_")
    return ((name + "_backward",) if backward else (name,)), None


@functools.cache
def torch_lists():
    """The entries of what fails on MPS, from the installed torch's common_mps.py (its source: the lists are
    defined only on a Mac)."""
    tree = ast.parse(COMMON_MPS.read_text(encoding="utf-8"))
    entries = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            key = (function.name, getattr(target, "id", None))
            if key not in TAKEN or not isinstance(node.value, ast.Dict):
                continue
            for k, v in zip(node.value.keys, node.value.values):
                if k.value in EXCUSED:
                    continue
                dtypes = None if isinstance(v, ast.Constant) else frozenset(getattr(torch, e.attr) for e in v.elts)
                names, match = aten_names(k.value, key[0] == "mps_ops_grad_modifier")
                source = f"common_mps.py:{k.lineno} {key[1]}[{k.value!r}]"
                entries.append(Entry(k.value, names, dtypes, match, TAKEN[key], source))
    return entries


# Limits documented with their rules, looked up before torch's lists. (float64 on the device: lacks() below.)
DOCUMENTED = [
    Entry("adaptive average pooling", ("_adaptive_avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward",
          "adaptive_avg_pool1d"), None, indivisible, "MPS raises 'Adaptive pool MPS: input sizes must be divisible "
          "by output sizes'", "pytorch issue 96056; aten/src/ATen/native/mps/operations/AdaptivePooling.mm"),
]


def lacks(name, args, outs):
    """Why MPS cannot run aten.`name` on these arguments (tensors as Meta), with where that is said; None if it can."""
    metas = list(leaves((args, outs), Meta))
    if any(m.dtype in FLOAT64 for m in metas):
        return ("float64, which MPS does not have (common_mps.py's mps_ops_modifier expects every op to fail in "
                "torch.double; torch says 'the MPS framework doesn't support float64'): do it on the host")
    dtype = next((m.dtype for m in leaves(args, Meta)), metas[0].dtype if metas else None)
    for e in DOCUMENTED + torch_lists():
        if name in e.aten and (e.dtypes is None or dtype in e.dtypes) and (e.match is None or e.match(name, args)):
            return f"{e.why} ({e.source})"
    return None


class Meta:
    """A tensor's dtype and shape, as recorded (a class, not a namedtuple: pytree would open a namedtuple)."""

    def __init__(self, dtype, shape):
        self.dtype, self.shape = dtype, shape

    def __repr__(self):
        return f"{self.dtype}{list(self.shape)}".replace("torch.", "")


def meta(x):
    """Arguments with each tensor as its Meta."""
    if isinstance(x, torch.Tensor):
        return Meta(x.dtype, tuple(x.shape))
    if isinstance(x, (list, tuple)):
        return [meta(v) for v in x]
    if isinstance(x, dict):
        return {k: meta(v) for k, v in x.items()}
    return x


def leaves(x, kind):
    """The objects of type `kind` in arguments (nested in lists, tuples and dicts): what pytree does, quicker."""
    if isinstance(x, kind):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from leaves(v, kind)
    elif isinstance(x, dict):
        for v in x.values():
            yield from leaves(v, kind)


class Recorder(TorchDispatchMode):
    """Every aten operation run under it, by where (set by the test), whether on the device, and its arguments
    with each tensor as Meta(dtype, shape)."""

    def __init__(self):
        super().__init__()
        self.device = WeakIdKeyDictionary()  # the tensors on the device; all others are on the host
        self.calling = []  # for each torch function running: whether it works on the device
        self.where = None
        self.calls = collections.Counter()  # (where, on the device, name, its arguments) -> count
        self.first = {}  # the same key -> (args, outputs) as Meta, the first time
        self.misuses = set()  # (where, what): a device tensor used where only a host tensor will do

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = list(leaves((args, kwargs), torch.Tensor))
        # From a device tensor; or, with no tensor in (a factory), called by a torch function on the device
        device = any(t in self.device for t in ins) if ins else bool(self.calling and self.calling[-1])
        if device and torch.float64 in (t.dtype for t in leaves((ins, out), torch.Tensor)):
            device = not in_grad_scalers_unscale()
        if device:
            for t in leaves(out, torch.Tensor):
                self.device[t] = True
        name = func.overloadpacket.__name__
        # the key: each tensor's dtype and shape, and the other arguments
        key = (self.where, device, name, repr(meta(args)), repr(meta(kwargs)))
        self.calls[key] += 1
        if key not in self.first:
            self.first[key] = (meta(args), meta(out))
        return out

    def faults(self):
        found = [f"{where}: {what}" for where, what in self.misuses]
        for (where, device, name, *_), (args, outs) in ((k, self.first[k]) for k in self.calls):
            why = lacks(name, args, outs) if device else None
            if why:
                tensors = ", ".join(map(repr, leaves(args, Meta)))
                found.append(f"{where}: aten.{name}({tensors}): {why}")
        return sorted(set(found))


def in_grad_scalers_unscale():
    """Whether torch's GradScaler.unscale_ is running (fp16): it takes its scale's reciprocal in float64, except
    on mps:0, where it does so in float32 (torch/amp/grad_scaler.py): a branch on the device that the CPU cannot
    take, so its float64 is not held against the device."""
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "unscale_" and Path(code.co_filename).parts[-2:] == ("amp", "grad_scaler.py"):
            return True
        frame = frame.f_back
    return False


def is_device_argument(d):
    """A torch.device is the device (mps on a Mac; the CPU stands in for it here); the string "cpu" is the host."""
    return isinstance(d, torch.device)


class Places(TorchFunctionMode):
    """Tells the recorder where the tensors that torch functions make live (see the module's docstring)."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        on_device = self.recorder.device
        tensors = list(leaves((args, kwargs), torch.Tensor))
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and args[0] in on_device:
            self.recorder.misuses.add((self.recorder.where, "Tensor.numpy() of a device tensor: .cpu() it first"))
        if tensors:
            device = any(t in on_device for t in tensors)
        else:  # a factory: torch.zeros(), torch.tensor(), ...
            device = is_device_argument(kwargs.get("device"))
        self.recorder.calling.append(device)
        try:
            out = func(*args, **kwargs)
            if func is torch.Tensor.cpu:
                out = out.clone()  # a copy, as a GPU's .cpu() makes
                on_device.pop(out, None)
            if func is torch.Tensor.to:
                target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
                if target is not None:
                    out = out.clone() if out is args[0] else out  # a copy, as between a GPU and the host
                    if is_device_argument(target):
                        on_device[out] = True
                    else:
                        on_device.pop(out, None)
        finally:
            self.recorder.calling.pop()
        return out


@contextlib.contextmanager
def recording(recorder, where, *on_device):
    """Record what runs inside under `where`; `on_device`: tensors, and modules (their parameters and buffers),
    that are on the device when it starts."""
    for x in on_device:
        for t in [*x.parameters(), *x.buffers()] if isinstance(x, torch.nn.Module) else [x]:
            recorder.device[t] = True
    recorder.where = where
    with Places(recorder), recorder:
        yield recorder


# ---------------------------------------------------------------- the lab's work, recorded

DEVICE = torch.device("cpu")  # stands in for mps: see is_device_argument()
TINY = ["--channels", "4,8,8", "--hidden", "16", "--batch-size", "16", "--seed", "0"]
EVERY_AUGMENTATION = ["--augment", "--elastic", "1.5", "--thickness", "0.3", "--lowres", "0.5"]


@pytest.fixture(scope="module")
def mnist(data_dir):
    """64 MNIST test digits: uint8 [64, 28, 28] and labels."""
    from lab.data import load_split
    images, labels = load_split(False, data_dir)
    return images[:64], labels[:64]


def mps_precision():
    from lab.device import pick_precision
    return pick_precision("auto", torch.device("mps"))


def mps_offers():
    """The precisions lab/device.py lets a user ask for on an Apple GPU with macOS 14 and this torch."""
    from lab.device import mps_precisions
    return sorted(mps_precisions())


def record_training(recorder, recipe, images, labels, monkeypatch, precision=None):
    """One epoch of two steps of `recipe` with every augmentation, then train.measure (evaluation, temperature),
    in `precision`, or in what --precision auto picks on MPS."""
    import train
    from lab import augment, settings
    from lab.data import training_batches

    mps = torch.device("mps")
    make_optimizer = train.make_optimizer
    monkeypatch.setattr(train, "make_optimizer", lambda args, params, device: make_optimizer(args, params, mps))
    args = settings.parse(["--recipe", recipe, *EVERY_AUGMENTATION, *TINY])
    precision = precision or mps_precision()
    state = train.make_state(args, DEVICE, precision, math.ceil(len(labels) / args.batch_size))
    augmenter = augment.make(args, state.augment_rng)
    progress = types.SimpleNamespace(first=0, step=lambda *a: None, close=lambda: None)
    data = {"val": (images, labels), "test": (images, labels)}
    step = f"a training step of --recipe {recipe} in {precision}"
    with recording(recorder, step, state.model, state.average, images, labels):
        batches = training_batches((images, labels), args.batch_size, state.shuffle, augmenter)
        train.train_one_epoch(state.model, state, train.make_loss(args), batches, progress, precision)
    where = f"evaluation and the temperature of --recipe {recipe} in {precision}"
    with recording(recorder, where, state.average, images, labels):
        train.measure(state.average, data, precision)


@pytest.fixture(scope="module")
def recorded(mnist):
    from inside.explain import Explainer
    from lab import augment
    from lab.data import normalize
    from net import build_model
    from reading.pages import classifier, digit_alone, read
    from reading.sheets import make_sheet

    digits, labels = mnist
    images = normalize(digits[:32]).to(DEVICE)
    labels32 = labels[:32].to(DEVICE)
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as monkeypatch:
        from lab.settings import RECIPES
        # a Mac with macOS 14 (torch asks the MPS backend, which this machine has not)
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)
        for recipe in RECIPES:
            record_training(recorder, recipe, images, labels32, monkeypatch)
        offered = mps_offers()  # --precision bf16 where the Mac has it: the default recipe in each
        for precision in offered:
            record_training(recorder, "robust", images, labels32, monkeypatch, precision)
        for size in augment.LOWRES_SIZES:  # every size in each call in training: here each on its own
            monkeypatch.setattr(augment, "LOWRES_SIZES", range(size, size + 1))
            with recording(recorder, f"coarser() to {size}x{size}", images):
                augment.coarser(images - augment.BACKGROUND, torch.Generator().manual_seed(size), 0.5)
    torch.manual_seed(0)
    model = build_model("cnn", channels=[4, 8, 8], hidden=16).to(DEVICE).eval()
    sheet = make_sheet(digits.numpy()[:4], labels.numpy()[:4], np.random.default_rng(0), "close", [4])
    with recording(recorder, "reading/pages.read() of a page", model):
        read(sheet.image, classifier(model, {}, DEVICE))
    png = io.BytesIO()
    Image.fromarray(digits[0].numpy()).save(png, format="PNG")
    explainer = Explainer(model, {})
    with recording(recorder, "draw.py's /explain and /attack (inside/explain.py)", explainer.net):
        seen = digit_alone(png.getvalue()).pixels  # ServedNet.pixels()
        digit = int(explainer.logits(seen)[0].argmax())
        explainer.integrated_gradients(seen, digit)
        explainer.grad_cam(seen, digit)
        explainer.grad_cam(torch.zeros(28, 28), 0, upsample=False)  # explain_info()
        explainer.logits(torch.zeros(28, 28))
        for method in ("pgd", "fgsm"):
            explainer.attack(seen, 0.1, digit, None, method)
            explainer.attack(seen, 0.1, digit, (digit + 1) % 10, method)
    recorder.offered = offered
    return recorder


def test_the_default_path_uses_only_ops_mps_has(recorded):
    places = {where for where, *_ in recorded.calls}
    assert len(places) == 2 * (4 + len(recorded.offered)) + 8 + 2, places  # every part of the lab's work was recorded
    on_device = {name for (_, device, name, *_) in recorded.calls if device}
    assert {"convolution_backward", "grid_sampler_2d", "native_batch_norm", "_log_softmax"} <= on_device
    assert not recorded.faults(), "\n".join(recorded.faults())


def test_the_lists_are_read_from_torch_and_catch_what_mps_lacks():
    """The lists hold what torch says MPS lacks, and the recorder finds it: area interpolation to 9 (28 is no
    multiple of 9), float64 on the device; not area to 14, float64 on the host, nor conv in float32."""
    names = {e.opinfo for e in torch_lists()}
    assert {"nn.functional.adaptive_avg_pool2d", "nn.functional.interpolatearea", "nn.functional.conv2d"} <= names
    recorder = Recorder()
    x = torch.rand(2, 1, 28, 28)
    weight = torch.rand(4, 1, 3, 3)
    with recording(recorder, "faults", x, weight):
        F.interpolate(x, size=(9, 9), mode="area")
        F.interpolate(x, size=(14, 14), mode="area")
        F.conv2d(x, weight).sum().double()
        (x.cpu().double() + 1).sum()
    found = recorder.faults()
    assert len(found) == 2, found
    assert "aten._adaptive_avg_pool2d(float32[2, 1, 28, 28])" in found[0] and "96056" in found[0]
    assert "aten._to_copy(float32[])" in found[1] and "float64" in found[1]


def test_coarser_gives_the_images_of_area_interpolation(monkeypatch):
    """coarser() shrinks by two matrix products now: on the CPU the same images as F.interpolate(mode="area")
    gave before, at every grid size, within float32's rounding of a mean of up to 16 pixels."""
    from lab import augment

    def before(x, generator, share):  # coarser() as it was, with interpolate's area mode
        picked = augment.some(len(x), share, generator, x.device)
        size = augment.LOWRES_SIZES[int(torch.randint(len(augment.LOWRES_SIZES), (1,)))]
        small = F.interpolate(x[picked], size=(size, size), mode="area")
        half = len(picked) // 2
        blocky = F.interpolate(small[:half], size=(28, 28), mode="nearest")
        smooth = F.interpolate(small[half:], size=(28, 28), mode="bilinear", align_corners=False)
        return x.index_copy(0, picked, torch.cat([blocky, smooth]))

    x = torch.rand(20, 1, 28, 28) * 3 - 0.5  # a normalised image's range, less the background
    for size in range(9, 17):
        monkeypatch.setattr(augment, "LOWRES_SIZES", range(size, size + 1))
        now = augment.coarser(x, torch.Generator().manual_seed(size), 0.5)
        then = before(x, torch.Generator().manual_seed(size), 0.5)
        assert (now - then).abs().max() <= 1e-6, size
        assert not torch.equal(now, x)
