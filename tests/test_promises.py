"""What README and the docs promise, each run for real: resuming by name or the latest run, the three
offline ways to MNIST, the training settings a flag changes, torchrun stopping every process when one
fails, and predict.py on the image formats it names."""
import functools
import http.server
import re
import shutil
import signal
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from test_distributed import TORCHRUN

from conftest import finish, needs_posix_signals, run_each, run_py, start_paused

TINY = ["--limit", 256, "--val-size", 100, "--test-limit", 500]  # 2 steps an epoch at batch 128


def scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


# ---------------------------------------------------------------- --resume, --resume NAME

@needs_posix_signals
def test_resume_alone_takes_the_latest_run_and_a_name_is_looked_up_in_logdir(data_dir, tmp_path):
    common = ["--epochs", 2, *TINY, "--data-dir", data_dir]
    for name in ("older", "newer"):  # two runs stopped in their second epoch, the newer one last
        proc = start_paused(3, "train.py", *common, "--run-name", name, "--checkpoint", f"{name}.pth", cwd=tmp_path)
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc, 120, "the run")
        assert proc.returncode == 130, out + err
    latest = run_py("train.py", "--resume", "--data-dir", data_dir, cwd=tmp_path)  # in ./boardlog, as README says
    assert latest.returncode == 0, latest.stderr
    assert f"Resuming {tmp_path / 'boardlog' / 'newer'}".replace(str(tmp_path) + "/", "") in latest.stdout
    epochs_done = lambda name: torch.load(tmp_path / "boardlog" / name / "last.pt", weights_only=True)["epoch"]  # noqa
    assert (epochs_done("newer"), epochs_done("older")) == (2, 1)  # the latest finished, the other left alone
    by_name = run_py("train.py", "--resume", "older", "--data-dir", data_dir, cwd=tmp_path)
    assert by_name.returncode == 0 and "Resuming boardlog/older after epoch 1" in by_name.stdout, by_name.stderr
    assert epochs_done("older") == 2
    nothing = run_py("train.py", "--resume", "nope", "--data-dir", data_dir, cwd=tmp_path)
    assert nothing.returncode == 2 and nothing.stderr.strip() == (
        "error: nothing to resume at nope: no last.pt there or under boardlog/nope")


# ---------------------------------------------------------------- MNIST without the internet

@pytest.fixture
def no_internet(monkeypatch):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # stands in for the internet: refused


@pytest.mark.quick
def test_mnist_from_an_http_mirror(mirror, tmp_path, no_internet):
    """`--mirror http://host/path/`: a web server holding the four .gz files, through torchvision's download."""
    from lab.data import load_split
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        images, labels = load_split(False, tmp_path / "d", mirror=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]  # MNIST's first test digits


@pytest.mark.quick
def test_mnist_from_gz_files_placed_in_raw(mirror, tmp_path, no_internet):
    from lab.data import load_split
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mirror.glob("*.gz"):
        shutil.copy(f, raw)  # by hand, as README says
    images, _ = load_split(True, tmp_path / "mnist")
    assert images.shape == (60000, 28, 28)


def test_mirror_on_the_command_line(trained, mirror, tmp_path):
    proc = run_py("test.py", "--checkpoint", trained["checkpoint"], "--data-dir", tmp_path / "fresh",
                  "--mirror", mirror, cwd=tmp_path)  # MNIST_MIRROR is empty for the scripts the tests run
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fresh" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert re.search(r"^Accuracy: \d+\.\d\d% \(\d+/10000\)$", proc.stdout, re.M)


# ---------------------------------------------------------------- the settings that change training

SETTINGS = {  # flags -> what must show that they acted
    "bf16": ["--precision", "bf16"],
    "step": ["--scheduler", "step", "--step-size", 1, "--gamma", 0.5, "--lr", 0.01, "--optimizer", "sgd"],
    "cosine": ["--scheduler", "cosine", "--lr", 0.01, "--optimizer", "sgd"],
    "rmsprop": ["--optimizer", "rmsprop", "--lr", 0.001],
    "adadelta": ["--optimizer", "adadelta", "--lr", 1.0],
    # on top of --recipe ours, MNIST's images as they are (the default, robust, augments already)
    "augment-dropout": ["--recipe", "ours", "--augment", "--dropout", 0.3],
    "plain": ["--recipe", "ours"],
}


@pytest.fixture(scope="module")
def settings_runs(data_dir, tmp_path_factory):
    """A 2-epoch run of each SETTINGS case, all in one child process: {case: (exit status, stderr, folder)}."""
    tmp = tmp_path_factory.mktemp("settings")
    cases = [[*flags, "--epochs", 2, *TINY, "--data-dir", data_dir, "--logdir", tmp, "--run-name", name,
              "--checkpoint", tmp / f"{name}.pth", "--device", "cpu"] for name, flags in SETTINGS.items()]
    return {name: (*result, tmp) for name, result in zip(SETTINGS, run_each("train.py", cases, cwd=tmp))}


def state(settings_runs, name):
    status, stderr, tmp = settings_runs[name]
    assert status == 0 and "Traceback" not in stderr, stderr
    return torch.load(tmp / name / "last.pt", weights_only=True)


def test_bf16_runs_on_the_cpu(settings_runs):
    assert state(settings_runs, "bf16")["settings"]["resolved"]["precision"] == "bf16"


@pytest.mark.quick
def test_fp16_on_the_cpu_is_a_one_line_error(data_dir, tmp_path):
    [(status, stderr)] = run_each("train.py", [["--precision", "fp16", "--epochs", 1, *TINY, "--data-dir", data_dir,
                                                "--device", "cpu"]], cwd=tmp_path)
    assert status == 2 and stderr.strip() == "error: --precision fp16 is for GPUs; on a CPU use bf16 or fp32"
    assert not (tmp_path / "boardlog").exists()  # refused before anything was made


def test_step_and_cosine_schedules_change_the_rate_as_they_say(settings_runs):
    tmp = settings_runs["step"][2]
    state(settings_runs, "step")
    # the rate of each epoch's last step, as TensorBoard's lr curve shows it: halved after every epoch
    assert [v for _, v in scalars(tmp / "step", "lr")] == pytest.approx([0.01, 0.005])
    state(settings_runs, "cosine")
    # annealed over the run's 4 steps: step t (from 0) at 0.01 (1 + cos(pi t / 4)) / 2; the epochs end at t = 1, 3
    cosine = [0.01 * (1 + np.cos(np.pi * t / 4)) / 2 for t in (1, 3)]
    assert [v for _, v in scalars(tmp / "cosine", "lr")] == pytest.approx(cosine, rel=1e-5)


def test_rmsprop_and_adadelta_are_the_optimisers_used(settings_runs):
    assert "square_avg" in state(settings_runs, "rmsprop")["optimizer"]["state"][0]
    assert "acc_delta" in state(settings_runs, "adadelta")["optimizer"]["state"][0]
    assert "exp_avg" in state(settings_runs, "plain")["optimizer"]["state"][0]  # adamw, the default


def test_augment_and_dropout_train_and_change_the_training(settings_runs):
    augmented, plain = state(settings_runs, "augment-dropout"), state(settings_runs, "plain")
    assert augmented["settings"]["training"]["dropout"] == 0.3 and augmented["settings"]["training"]["augment"]
    assert plain["settings"]["training"]["dropout"] is None and not plain["settings"]["training"]["augment"]
    ckpt = torch.load(settings_runs["plain"][2] / "augment-dropout.pth", weights_only=True)
    assert ckpt["model_options"] == {"batchnorm": True, "norm_after_pool": 2, "dropout": 0.3}
    from lab.checkpoint import load_checkpoint
    model, _ = load_checkpoint(settings_runs["plain"][2] / "augment-dropout.pth")
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]
    tmp = settings_runs["plain"][2]
    assert scalars(tmp / "augment-dropout", "loss/train") != scalars(tmp / "plain", "loss/train")


def test_test_limit_tests_on_the_first_n_test_images(settings_runs, data_dir):
    plain = state(settings_runs, "plain")  # TINY: --test-limit 500
    assert plain["settings"]["training"]["test_limit"] == 500
    assert round(plain["best"]["test_acc"] * 500, 6).is_integer()
    [metadata] = (settings_runs["plain"][2] / "plain").glob("*/test_digits/metadata.tsv")  # the projector's digits
    from lab.data import load_split
    _, labels = load_split(False, data_dir)
    first = [int(x) for x in metadata.read_text(encoding="utf-8").split()]
    assert first == labels[:500].tolist()  # the first 500, not 2,000


# ---------------------------------------------------------------- torchrun: one process fails, all stop

@needs_posix_signals
def test_torchrun_stops_every_process_when_one_fails(data_dir, tmp_path):
    net = tmp_path / "net.pth"
    proc = start_paused(3, "train.py", "--epochs", 2, *TINY, "--device", "cpu", "--data-dir", data_dir,
                        "--checkpoint", net, cwd=tmp_path, launcher=TORCHRUN, pauses=2)
    ranks = {int(m.group(2)): int(m.group(1)) for m in (re.search(r"process (\d+), rank (\d+)", line)
                                                       for line in proc.pauses)}
    import os
    os.kill(ranks[1], signal.SIGKILL)  # rank 1 dies, in the middle of epoch 2
    out, err = finish(proc, 120, "the run")  # torchrun stops rank 0 and ends, within its own timeout
    assert proc.returncode != 0
    assert err.count("Interrupted during epoch 2.") == 1 and "--resume" in err, err  # rank 0 stopped cleanly
    for pid in ranks.values():  # no process of the run is left
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert torch.load(net, weights_only=True)["epoch"] == 1 and not (tmp_path / "net.pth.lock").exists()


# ---------------------------------------------------------------- predict.py's image formats

@pytest.mark.quick
def test_predict_reads_16_bit_bmp_webp_and_tiff(trained, data_dir, tmp_path):
    from lab.data import load_split
    from reading.images import load_image, preprocess
    images, labels = load_split(False, data_dir)
    digit, label = 255 - images[0].numpy(), int(labels[0])  # a 7, dark on white
    big = Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC)
    Image.fromarray((np.asarray(big, np.uint16) * 257)).save(tmp_path / "deep.png")  # 16-bit grey
    big.convert("RGB").save(tmp_path / "scan.bmp")
    big.convert("RGB").save(tmp_path / "phone.webp", quality=90)
    big.save(tmp_path / "fax.tiff")
    big.save(tmp_path / "plain.png")
    files = ["deep.png", "scan.bmp", "phone.webp", "fax.tiff"]
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # really 16 bits deep
    proc = run_py("predict.py", *files, "--checkpoint", trained["checkpoint"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[2] for line in proc.stdout.splitlines()] == [str(label)] * 4, proc.stdout
    reference = preprocess(load_image(tmp_path / "plain.png"))
    for name in files:  # each format becomes (nearly) the same 28x28 image as the 8-bit PNG
        assert (preprocess(load_image(tmp_path / name)) - reference).abs().max() < 0.05, name
