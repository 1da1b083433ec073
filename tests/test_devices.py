"""The machines students have, played here: the precision each GPU gets (its properties faked), and a run
resumed on another kind of device than it was saved on (lab/device.py, lab/runs.py, train.py's TrainingState)."""
import warnings

import pytest
import torch
from torch.torch_version import TorchVersion

from conftest import run_py
from lab import device as lab_device
from lab import settings
from lab.cli import UserError
from lab.device import mps_precisions, pick_precision, precision_for
from lab.runs import precision_again

# ---------------------------------------------------------------- precision by what the hardware does

GPUS = {  # name: (compute capability, what --precision auto must take)
    "GTX 1080": ((6, 1), "fp32"),  # Pascal: fp16 slower than fp32, no tensor cores
    "T4": ((7, 5), "fp16"),  # Turing: fp16 tensor cores; bf16 only emulated
    "V100": ((7, 0), "fp16"),
    "A100": ((8, 0), "bf16"),
    "H100": ((9, 0), "bf16"),
}


@pytest.mark.quick
@pytest.mark.parametrize("gpu", GPUS)
def test_auto_takes_what_the_gpu_does_in_hardware(gpu):
    capability, expected = GPUS[gpu]
    assert precision_for("auto", "cuda", capability=capability) == expected
    assert precision_for("fp32", "cuda", capability=capability) == "fp32"
    assert precision_for("fp16", "cuda", capability=capability) == "fp16"  # runs on every CUDA GPU


@pytest.mark.quick
@pytest.mark.parametrize("gpu", ["GTX 1080", "T4", "V100"])
def test_bf16_before_ampere_is_a_one_line_error(gpu):
    capability, _ = GPUS[gpu]
    with pytest.raises(UserError) as error:
        precision_for("bf16", "cuda", capability=capability)
    assert f"compute capability 8.0 or newer; this one is {capability[0]}.{capability[1]}" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.quick
def test_pick_precision_asks_the_capability_not_is_bf16_supported(monkeypatch):
    # A T4 as torch 2.14 describes it: is_bf16_supported() is True there (emulation counts).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert pick_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))  # an RTX 3090
    assert pick_precision("auto", torch.device("cuda")) == "bf16"


def test_the_fp16_path_has_the_scaler():
    """fp16 is chosen for 7.x GPUs because it comes with the GradScaler: train.py's state and bench.py make
    theirs enabled for fp16 alone (the step, train.train_step, is the same for all three)."""
    import train
    args = settings.parse(["--limit", "256", "--recipe", "ours"])
    for precision in ("fp16", "bf16", "fp32"):
        assert train.make_state(args, torch.device("cpu"), precision, 2).scaler.is_enabled() == (precision == "fp16")


MPS_BUILDS = {  # name: (what its MPS autocast runs, what --precision bf16 and fp16 give: the precision or None)
    "without bf16": ({"fp16"}, None, "fp16"),  # torch 2.5 (with a scaler), or macOS 13
    "with bf16": ({"fp16", "bf16"}, "bf16", "fp16"),
    "without autocast": (set(), None, None),  # torch 2.4
}


@pytest.mark.quick
@pytest.mark.parametrize("build", MPS_BUILDS)
def test_mps_gets_only_what_its_autocast_runs(build):
    can, bf16, fp16 = MPS_BUILDS[build]
    assert precision_for("auto", "mps", mps_can=can) == "fp32"  # fp16 at fp32's rate: no gain to take by default
    assert precision_for("fp32", "mps", mps_can=can) == "fp32"
    for choice, expected in (("bf16", bf16), ("fp16", fp16)):
        if expected:
            assert precision_for(choice, "mps", mps_can=can) == expected
        else:
            with pytest.raises(UserError, match=f"--precision {choice} does not train on this Apple GPU"):
                precision_for(choice, "mps", mps_can=can)


def fake_mps_autocast(supported):
    """torch.autocast as a torch whose MPS autocast runs the dtypes `supported` (None: no MPS autocast at all)."""

    def autocast(device_type, dtype):
        assert device_type == "mps"
        if supported is None:  # torch 2.4's words
            raise RuntimeError("User specified an unsupported autocast device_type 'mps'")
        if dtype not in supported:  # torch 2.5's
            warnings.warn("In MPS autocast, but the target dtype is not supported. Disabling autocast.", stacklevel=2)

    return autocast


MPS_TORCHES = {  # (torch version, its MPS autocast's dtypes, macOS 14 or newer) -> mps_precisions()
    ("2.4.1", None, True): set(),
    ("2.5.1", (torch.float16,), True): set(),  # fp16 autocast, but fp16 is never offered (lab/device.py says why)
    ("2.6.0", (torch.float16, torch.bfloat16), True): {"bf16"},
    ("2.6.0", (torch.float16, torch.bfloat16), False): set(),  # bf16 needs macOS 14
    ("2.8.0", (torch.float16, torch.bfloat16), True): {"bf16"},  # a GradScaler on MPS, but conv's fp16 gradients fail
    ("2.10.0", (torch.float16, torch.bfloat16), False): set(),
}


@pytest.mark.quick
@pytest.mark.parametrize("version, dtypes, macos14", MPS_TORCHES)
def test_mps_precisions_asks_torch(monkeypatch, version, dtypes, macos14):
    monkeypatch.setattr(torch, "autocast", fake_mps_autocast(dtypes))
    monkeypatch.setattr(torch, "__version__", TorchVersion(version))
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14)
    assert mps_precisions() == MPS_TORCHES[version, dtypes, macos14]


@pytest.mark.quick
def test_mps_precisions_with_this_torchs_own_autocast(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)  # as on a Mac
    can = mps_precisions()
    assert can <= {"bf16"}
    if torch.__version__ >= "2.6":
        assert can == {"bf16"}


@pytest.mark.quick
def test_the_cpu_is_as_before(monkeypatch):
    assert precision_for("auto", "cpu", cpu_bf16=True) == "bf16"
    assert precision_for("auto", "cpu", cpu_bf16=False) == "fp32"
    assert precision_for("bf16", "cpu", cpu_bf16=False) == "bf16"  # emulated, slow, but it runs
    with pytest.raises(UserError, match="--precision fp16 is for GPUs; on a CPU use bf16 or fp32"):
        precision_for("fp16", "cpu", cpu_bf16=True)
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        precision_for("fp8", "cuda", capability=(9, 0))


# ---------------------------------------------------------------- resuming on another kind of device


@pytest.mark.quick
def test_a_resumed_runs_precision_is_chosen_again_for_this_device(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(lab_device, "cpu_has_fast_bf16", lambda: False)  # an AVX2-only CPU
    precision, note = precision_again("auto", "bf16", cpu)  # trained in bf16 on a GPU
    assert precision == "fp32"
    assert note == "Note: the run trained in bf16 and goes on in fp32: --precision auto takes fp32 on this cpu device"
    precision, note = precision_again("fp16", "fp16", cpu)  # typed on a GPU
    assert precision == "fp32" and "this cpu device cannot run --precision fp16, so it takes auto's fp32" in note
    assert precision_again("auto", "fp32", cpu) == ("fp32", None)  # the same machine: nothing to say
    assert precision_again("bf16", "bf16", cpu) == ("bf16", None)  # typed, and it runs here: kept
    monkeypatch.setattr(lab_device, "cpu_has_fast_bf16", lambda: True)
    assert precision_again("fp16", "fp16", cpu)[0] == "bf16"


def test_a_state_from_another_device_reseeds_its_generator_and_scaler(capsys):
    """In the process: a CPU run's state with a CUDA-sized (16-byte) device generator, resumed in fp16 (a T4
    resuming a run that trained in bf16 or fp32, whose saved scaler is empty)."""
    import train
    args = settings.parse(["--limit", "256", "--recipe", "ours", "--seed", "3"])
    cpu = torch.device("cpu")
    state = train.make_state(args, cpu, "fp32", 2)
    state.epoch = 2
    saved = {**state.state_dict(), "aug_generator": torch.zeros(16, dtype=torch.uint8)}
    assert saved["scaler"] == {}
    resumed = train.make_state(args, cpu, "fp16", 2, saved)
    assert resumed.epoch == 2 and resumed.scaler.is_enabled() and resumed.scaler.get_scale() == 2.0**16
    expected = torch.Generator().manual_seed(3 * 1_000_000 + 2 * 1_000)  # from (seed, epoch) alone
    assert torch.equal(resumed.augment_rng.get_state(), expected.get_state())
    assert "random numbers start again from its seed (3) and epoch (2) on this cpu device" in capsys.readouterr().out


# 2 steps an epoch, augmented (its generator is the device's); a schedule by epochs, which one more epoch leaves valid
TINY = ["--limit", 256, "--val-size", 100, "--test-limit", 500, "--recipe", "ours", "--augment", "--scheduler", "step"]


def test_a_run_saved_on_another_device_resumes_with_notes(data_dir, tmp_path):
    """A real run's last.pt made to look saved on a GPU (a 16-byte generator state, fp16 typed there), resumed
    here on the CPU: the two notes, then it trains on."""
    first = run_py("train.py", "--epochs", 1, *TINY, "--device", "cpu", "--data-dir", data_dir, "--run-name", "r",
                   cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "boardlog" / "r" / "last.pt"
    state = torch.load(last, weights_only=True)
    assert state["aug_generator"].numel() == 5056  # a CPU generator's
    record = state["settings"]
    record["training"]["epochs"] = 2  # one more epoch to resume
    record["run"]["precision"] = record["resolved"]["precision"] = "fp16"
    cuda_like = torch.tensor([42, 0, 0, 0, 0, 0, 0, 0] + [0] * 8, dtype=torch.uint8)  # a CUDA one's: seed, offset
    torch.save({**state, "aug_generator": cuda_like, "settings": record}, last)

    done = run_py("train.py", "--resume", tmp_path / "boardlog" / "r", "--device", "cpu", "--data-dir", data_dir,
                  cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    auto = pick_precision("auto", torch.device("cpu"))
    assert (f"Note: the run trained in fp16 and goes on in {auto}: this cpu device cannot run --precision fp16, "
            f"so it takes auto's {auto}") in done.stdout
    assert "random numbers start again from its seed (1) and epoch (1) on this cpu device" in done.stdout
    assert "after epoch 1" in done.stdout and "epoch  2/2" in done.stdout
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 2 and state["aug_generator"].numel() == 5056
    assert state["settings"]["resolved"]["precision"] == auto
