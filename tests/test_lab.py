"""The lab end to end: net, device choice, data, train.py, test.py, checkpoints, errors."""
import json
import re
import signal

import pytest
import torch

from conftest import ROOT, finish, needs_posix_signals, run_each, run_py, start_paused

TAGS = {"loss/train", "accuracy/train", "loss/val", "accuracy/val", "accuracy/test", "lr"}


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# ---------------------------------------------------------------- net.py

@pytest.mark.quick
def test_net_shape_and_parameter_count():
    from net import Net, build_model, count_parameters
    model = build_model("cnn")
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    # conv: out*(in*3*3 + 1); linear: out*(in + 1)
    expected = 32 * (1 * 9 + 1) + 64 * (32 * 9 + 1) + 64 * (64 * 9 + 1) + 128 * (576 + 1) + 10 * (128 + 1)
    assert count_parameters(model) == expected == 130_890
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64] and len(pools) == 3
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    # options change the net; the defaults do not
    assert count_parameters(Net(batchnorm=True)) != expected


@pytest.mark.quick
def test_pooling_before_relu_is_the_textbook_block():
    """net.py pools before the ReLU (cheaper); the outputs and gradients are those of ReLU then pool."""
    from net import Net
    torch.manual_seed(0)
    ours = Net()
    textbook = torch.nn.Sequential(*[torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2))
                                     for conv in ours.features if isinstance(conv, torch.nn.Conv2d)], ours.head)
    x = torch.randn(16, 1, 28, 28)
    a, b = ours(x), textbook(x)
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.square().sum(), list(ours.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(ours.parameters()))
    assert all(torch.allclose(p, q, rtol=1e-5, atol=1e-6) for p, q in zip(ga, gb))


# ---------------------------------------------------------------- device order

@pytest.mark.quick
@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_order(monkeypatch, cuda, mps, expected):
    from lab.device import pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device("auto").type == expected


@pytest.mark.quick
def test_unavailable_device_is_a_user_error(monkeypatch):
    from lab.cli import UserError
    from lab.device import pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda"):
        pick_device("cuda")


# ---------------------------------------------------------------- data.py

@pytest.mark.quick
def test_local_mirror_folder_is_copied_checked_and_read(mirror, tmp_path):
    from lab.data import load_split
    images, labels = load_split(False, tmp_path / "d", mirror=str(mirror))
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and set(labels.unique().tolist()) == set(range(10))
    raw = tmp_path / "d" / "MNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 47040016


@pytest.mark.quick
def test_our_idx_reader_matches_torchvision(data_dir):
    from torchvision.datasets import MNIST

    from lab.data import load_split
    for train in (True, False):
        images, labels = load_split(train, data_dir)
        reference = MNIST(str(data_dir), train=train)
        assert torch.equal(images, reference.data) and torch.equal(labels, reference.targets)


@pytest.mark.quick
@pytest.mark.parametrize("damage", ["truncated", "not-idx"])
def test_damaged_data_file_is_a_one_line_error(data_dir, tmp_path, damage):
    import shutil
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_dir / "MNIST" / "raw", raw)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:5000] if damage == "truncated" else b"<html>Not found</html>")
    proc = run_py("train.py", "--data-dir", tmp_path, "--epochs", 1, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {labels} is not a complete MNIST file (corrupt or truncated); "
        "delete it and run again to fetch it afresh"]


@pytest.mark.quick
def test_mirror_from_environment_variable(mirror, tmp_path, monkeypatch):
    from lab.data import ensure_mnist
    monkeypatch.setenv("MNIST_MIRROR", str(mirror))
    ensure_mnist(tmp_path)
    assert (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


@pytest.mark.quick
def test_bad_mirror_is_one_clean_error_and_leaves_no_partial_file(mirror, tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    from lab.cli import UserError
    from lab.data import ensure_mnist
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # stands in for the internet: refused
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in mirror.glob("*.gz"):  # the four files alone, the right names; one is made corrupt
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"not really gzip")
    data = tmp_path / "data"
    with pytest.raises(UserError) as err:
        ensure_mnist(data, mirror=str(bad))
    msg = str(err.value)
    assert "\n" not in msg and "train-labels-idx1-ubyte.gz" in msg and "md5" in msg
    assert str(bad) in msg and "127.0.0.1" in msg and "--mirror" in msg and "MNIST_MIRROR" in msg
    raw = data / "MNIST" / "raw"
    leftovers = {p.name for p in raw.iterdir()}
    assert not any(name.startswith("train-labels") for name in leftovers), leftovers
    assert all(p.stat().st_size > 0 for p in raw.iterdir())  # no 0-byte download stubs


@pytest.mark.quick
def test_validation_split_is_fixed_and_disjoint():
    from lab.data import split_train_val
    images = torch.arange(100).view(100, 1, 1).expand(100, 28, 28).to(torch.uint8)
    labels = torch.arange(100)
    (tx, ty), (vx, vy) = split_train_val(images, labels, 10, seed=0)
    (_, ty2), (_, vy2) = split_train_val(images, labels, 10, seed=0)
    assert len(vy) == 10 and len(ty) == 90 and torch.equal(vy, vy2) and torch.equal(ty, ty2)
    assert not set(vy.tolist()) & set(ty.tolist())


@pytest.mark.quick
def test_augment_keeps_shape_background_and_digit():
    from lab.augment import augment
    from lab.data import MEAN, STD, normalize
    img = torch.zeros(4, 28, 28, dtype=torch.uint8)
    img[:, 10:18, 12:16] = 255
    x = normalize(img)
    out = augment(x, torch.Generator().manual_seed(0))  # a CPU generator for CPU tensors
    assert out.shape == x.shape
    assert torch.allclose(out[:, :, 0, 0], torch.full((4, 1), -MEAN / STD))  # corners stay background
    assert not torch.allclose(out, x)  # it does move things
    ink = (out > 0).flatten(1).sum(1)
    assert (ink > 10).all()  # the stroke is still there


# ---------------------------------------------------------------- train.py

@pytest.mark.quick
def test_training_writes_checkpoint_events_and_learns(trained):
    out = trained["proc"].stdout
    assert re.search(r"^Using (cpu|cuda|mps) device", out, re.M)
    assert "Best validation accuracy" in out and "tensorboard --logdir" in out
    assert len(re.findall(r"^epoch +\d/2 ", out, re.M)) == 2

    ckpt = torch.load(trained["checkpoint"], weights_only=True)
    assert ckpt["model"] == "cnn" and ckpt["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert ckpt["epoch"] in (1, 2) and ckpt["settings"]["training"]["limit"] == 12000
    assert set(ckpt["state_dict"]) == set(torch.nn.Module.state_dict(__import__("net").Net()))

    tags = scalars(trained["run_dir"])
    assert TAGS <= set(tags)
    assert [s for s, _ in tags["accuracy/val"]] == [1, 2]
    # the checkpoint is the epoch with the best validation accuracy, as logged
    best_step, best_val = max(tags["accuracy/val"], key=lambda sv: (sv[1], -sv[0]))
    assert ckpt["epoch"] == best_step and ckpt["val_acc"] == pytest.approx(best_val, abs=1e-6)
    # the real-data learning check: 12,000 images, 2 epochs
    assert best_val >= 0.97, tags["accuracy/val"]


def test_runs_of_a_few_steps_train(data_dir, tmp_path):
    limits = [500, 256, 100]  # 4, 2 and 1 steps: OneCycleLR's smallest cases
    cases = [["--epochs", 1, "--limit", n, "--val-size", 100, "--test-limit", 500, "--data-dir", data_dir,
              "--checkpoint", tmp_path / f"{n}.pth",
              "--logdir", tmp_path / "logs", "--run-name", n] for n in limits]
    for n, (status, stderr) in zip(limits, run_each("train.py", cases, cwd=tmp_path)):
        assert status == 0 and "Traceback" not in stderr, (n, stderr)
        assert torch.load(tmp_path / f"{n}.pth", weights_only=True)["epoch"] == 1


@pytest.mark.quick
def test_hparams_and_graph_are_logged(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(trained["run_dir"]))
    acc.Reload()
    # the net's own graph, layer by layer with each output's shape (batch left out): three conv+pool blocks, the
    # dense head; a wrong width or a missing activation changes it
    computed = [(n.op.split("::")[1], tuple(d.size for d in n.attr["_output_shapes"].list.shape[0].dim)[1:])
                for n in acc.Graph().node if n.op in ("aten::_convolution", "aten::max_pool2d", "aten::relu_",
                                                        "aten::flatten", "aten::linear")]
    assert computed == [layer for c, s in [(32, 28), (64, 14), (64, 7)] for layer in
                        [("_convolution", (c, s, s)), ("max_pool2d", (c, s // 2, s // 2)),
                         ("relu_", (c, s // 2, s // 2))]] + [
        ("flatten", (576,)), ("linear", (128,)), ("relu_", (128,)), ("linear", (10,))], computed
    assert "input/x" in {n.name for n in acc.Graph().node}
    hparams = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams and "_hparams_/session_end_info" in hparams
    from tensorboard.plugins.hparams import plugin_data_pb2
    info = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert info.session_start_info.hparams["model"].string_value == "cnn"
    assert info.session_start_info.hparams["epochs"].number_value == 2


@needs_posix_signals
def test_ctrl_c_keeps_best_checkpoint_then_resume_continues(data_dir, tmp_path):
    # 3,000 images in batches of 128: 24 steps an epoch, so step 27 is the third step of epoch 2.
    proc = start_paused(27, "train.py", "--epochs", 3, "--limit", 3000, "--val-size", 1000, "--test-limit", 1000,
                        "--data-dir", data_dir, "--logdir", tmp_path / "logs", "--run-name", "r",
                        "--checkpoint", tmp_path / "net.pth", cwd=tmp_path)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during epoch 2
    out, err = finish(proc, 300, "the run")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err and "Interrupted during epoch 2." in err
    assert "epoch  1/3" in out and "epoch  2/3" not in out
    assert torch.load(tmp_path / "net.pth", weights_only=True)["epoch"] == 1
    assert [s for s, _ in scalars(tmp_path / "logs" / "r")["accuracy/val"]] == [1]
    assert not (tmp_path / "net.pth.lock").exists()  # Ctrl-C freed net.pth for the next run

    # a setting typed with --resume that the run would overrule in silence is refused, before any data is read
    typed = run_py("train.py", "--resume", tmp_path / "logs" / "r", "--epochs", 5, "--lr", 0.1, "--seed", 1,
                   "--channels", "32,64,64", "--data-dir", data_dir, cwd=tmp_path)
    assert typed.returncode == 2 and "Traceback" not in typed.stderr, typed.stderr
    assert "leave out --epochs 5 (the run's: 3), --lr 0.1 (the run's: 0.006)" in typed.stderr
    assert "--seed" not in typed.stderr and "--channels" not in typed.stderr  # the run's own values: no conflict
    assert torch.load(tmp_path / "net.pth", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "net.pth.lock").exists()

    done = run_py("train.py", "--resume", tmp_path / "logs" / "r", "--data-dir", data_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "after epoch 1" in done.stdout and "epoch  2/3" in done.stdout and "epoch  1/3" not in done.stdout
    tags = scalars(tmp_path / "logs" / "r")
    assert [s for s, _ in tags["accuracy/val"]] == [1, 2, 3]  # the curve carries on unbroken
    # so do the pictures and histograms (board.py), and the command is kept, with the resume's own beside it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "logs" / "r"), size_guidance={"images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("val/mistakes")] == [1, 2, 3]
    assert [e.step for e in acc.Histograms("grads/head.2.weight")] == [1, 2, 3]
    assert [e.step for e in acc.Images("test/confusion")] == [3]
    assert [e.step for e in acc.Tensors("command/text_summary")] == [0, 2]
    # nothing left to resume now
    again = run_py("train.py", "--resume", tmp_path / "logs" / "r", "--data-dir", data_dir, cwd=tmp_path)
    assert again.returncode == 2 and "already finished" in again.stderr and "more --epochs" in again.stderr


@pytest.mark.quick
def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from lab import files
    path = tmp_path / "net.pth"
    files.save_torch({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_half_way(fd):  # the new file's bytes are written, not yet on disk: Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        files.save_torch({"epoch": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["net.pth"]  # no temporary file left


@pytest.mark.quick
def test_failed_save_is_one_line_and_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from lab import files
    from lab.cli import UserError
    path = tmp_path / "net.pth"
    files.save_torch({"epoch": 1}, path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(UserError, match="No space left on device") as err:
        files.save_torch({"epoch": 2}, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["net.pth"]


@pytest.mark.quick
def test_existing_run_name_is_refused_not_overwritten(trained):
    run_files = lambda: {p: p.read_bytes() for p in [trained["checkpoint"], *trained["run_dir"].rglob("*")]  # noqa: E731
                         if p.is_file()}
    before = run_files()
    proc = run_py("train.py", "--epochs", 1, "--limit", 100, "--data-dir", trained["data_dir"],
                  "--logdir", trained["logdir"], "--run-name", "r1", "--checkpoint", trained["dir"] / "other.pth",
                  cwd=trained["dir"])
    assert proc.returncode == 2 and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert not (trained["dir"] / "other.pth").exists()
    assert run_files() == before  # the first run's checkpoint, last.pt and events: every byte as it was


BAD_FLAGS = [
    (["--epochs", "0"], "--epochs"), (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"),
    (["--device", "tpu"], "--device"), (["--nope"], "--nope"), (["--label-smoothing", "2"], "--label-smoothing"),
    (["--dropout", "1.5"], "--dropout"), (["--momentum", "-0.9"], "--momentum"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--seed", "-3"], "--seed"), (["--val-size", "0"], "--val-size"),
    (["--batch-size", "2.5"], "--batch-size")]
UNUSABLE = ["checkpoint-is-a-folder", "logdir-is-a-file", "data-dir-is-a-file", "data-dir-is-a-link-to-itself",
            "checkpoint-folder-is-a-file"]


@pytest.fixture(scope="module")
def one_line_errors(data_dir, tmp_path_factory):
    """train.py's answer to every bad flag and unusable path below, run in one child process."""
    tmp = tmp_path_factory.mktemp("paths")
    (tmp / "a-file").write_text("x", encoding="utf-8")
    (tmp / "a-folder").mkdir()
    (tmp / "a-loop").symlink_to(tmp / "a-loop")  # a mistake once made here by `ln -s`
    paths = {"checkpoint-is-a-folder": ["--checkpoint", tmp / "a-folder"],
             "logdir-is-a-file": ["--logdir", tmp / "a-file"],
             "data-dir-is-a-file": ["--data-dir", tmp / "a-file"],
             "data-dir-is-a-link-to-itself": ["--data-dir", tmp / "a-loop"],
             "checkpoint-folder-is-a-file": ["--checkpoint", tmp / "a-file" / "net.pth"]}
    cases = [flags for flags, _ in BAD_FLAGS]
    cases += [["--epochs", 1, "--limit", 200, "--val-size", 100, "--test-limit", 500, "--data-dir", data_dir, *paths[w]]
              for w in UNUSABLE]
    results = run_each("train.py", cases, cwd=tmp)
    return dict(zip([tuple(flags) for flags, _ in BAD_FLAGS] + UNUSABLE, results)), paths


@pytest.mark.quick
@pytest.mark.parametrize("flags, words", BAD_FLAGS)
def test_bad_flags_are_one_line_errors(one_line_errors, flags, words):
    status, stderr = one_line_errors[0][tuple(flags)]
    assert status == 2 and words in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


@pytest.mark.quick
@pytest.mark.parametrize("where", UNUSABLE)
def test_unusable_paths_are_one_line_errors(one_line_errors, where):
    status, stderr = one_line_errors[0][where]
    assert status == 2 and "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and one_line_errors[1][where][0] in lines[0], lines


# ---------------------------------------------------------------- test.py

@pytest.mark.quick
def test_test_py_prints_what_its_json_says(trained, tmp_path):
    proc = run_py("test.py", "--checkpoint", trained["checkpoint"], "--data-dir", trained["data_dir"],
                  "--json", tmp_path / "r.json", "--samples", 5, "--report", tmp_path / "rep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    m = re.search(r"^Accuracy: (\d+\.\d\d)% \((\d+)/(\d+)\)$", proc.stdout, re.M)
    assert m, proc.stdout
    assert float(m.group(1)) == pytest.approx(100 * result["accuracy"], abs=0.005)
    assert int(m.group(2)) == result["correct"] and int(m.group(3)) == result["total"] == 10000
    cm = torch.tensor(result["confusion_matrix"])
    assert cm.sum() == 10000 and cm.trace() == result["correct"]
    assert result["checkpoint_epoch"] == torch.load(trained["checkpoint"], weights_only=True)["epoch"]
    assert len(re.findall(r"image +\d+: predicted \d", proc.stdout)) == 5
    assert result["accuracy"] > 0.96
    from PIL import Image
    for name in ("confusion.png", "misclassified.png", "predictions.png"):
        with Image.open(tmp_path / "rep" / name) as im:
            assert im.size[0] > 300 and len(im.getcolors(im.width * im.height)) > 10  # drawn, not blank


@pytest.mark.quick
def test_test_py_does_not_import_train_py():
    source = (ROOT / "test.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import train|from train )", source, re.M)


BAD_CHECKPOINTS = ["missing", "empty", "garbage", "zip-half", "foreign", "pickled-model"]


@pytest.fixture(scope="module")
def bad_checkpoints(trained, tmp_path_factory):
    """test.py's answer to each bad checkpoint, in one child process: {kind: (file, status, stderr)}."""
    tmp = tmp_path_factory.mktemp("bad")
    files = {kind: tmp / f"{kind}.pth" for kind in BAD_CHECKPOINTS}
    files["missing"] = tmp / "net.pth"
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(b"garbage")
    files["zip-half"].write_bytes(trained["checkpoint"].read_bytes()[:50_000])
    torch.save({"weights": torch.ones(2)}, files["foreign"])
    from net import Net
    torch.save(Net(), files["pickled-model"])  # a whole pickled model: refused by weights_only loading
    cases = [[] if kind == "missing" else ["--checkpoint", files[kind], "--data-dir", trained["data_dir"]]
             for kind in BAD_CHECKPOINTS]
    return {kind: (files[kind], *result) for kind, result in zip(BAD_CHECKPOINTS, run_each("test.py", cases, cwd=tmp))}


@pytest.mark.quick
def test_missing_checkpoint(bad_checkpoints):
    _, status, stderr = bad_checkpoints["missing"]
    assert status == 2
    assert stderr.strip() == "error: no checkpoint at net.pth: run python train.py first"


@pytest.mark.quick
@pytest.mark.parametrize("content", BAD_CHECKPOINTS[1:])
def test_corrupt_or_foreign_checkpoint(bad_checkpoints, content):
    bad, status, stderr = bad_checkpoints[content]
    assert status == 2 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and str(bad) in stderr
