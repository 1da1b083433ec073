"""What a lab report asks, one command each: per-step curves, the reports' choices as flags, fair
sweeps, seeds grouped into mean ± sd, the figures and tables they paste. Real MNIST, small runs."""
import re
import statistics

import pytest
import torch
from test_experiments import tables

from conftest import ROOT, run_each, run_py

SMALL = ["--epochs", 2, "--limit", 1000, "--val-size", 500, "--test-limit", 1000]  # 8 steps an epoch at batch 128


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# ---------------------------------------------------------------- curves within an epoch

def test_log_every_and_eval_every_add_step_curves_and_change_nothing_else(data_dir, tmp_path):
    common = [*SMALL, "--data-dir", data_dir, "--logdir", tmp_path / "logs", "--seed", 2]
    plain = run_py("train.py", *common, "--run-name", "plain", "--checkpoint", tmp_path / "plain.pth",
                   "--log-every", 1000, cwd=tmp_path)
    steps = run_py("train.py", *common, "--run-name", "steps", "--checkpoint", tmp_path / "steps.pth",
                   "--log-every", 5, "--eval-every", 4, cwd=tmp_path)
    assert plain.returncode == 0 and steps.returncode == 0, plain.stderr + steps.stderr
    # Not a terminal (a pipe): a plain line every 5 steps, counted over the run (5, 10, 15 of 16)
    assert re.findall(r"^step (\d+)/8 of epoch (\d)/2  train loss [\d.]+ acc [\d.]+%$", steps.stdout, re.M) == \
        [("5", "1"), ("2", "2"), ("7", "2")]
    assert "step " not in plain.stdout
    curves = scalars(tmp_path / "logs" / "steps" / "steps")
    assert [s for s, _ in curves["loss/train_step"]] == [5, 10, 15]
    assert [s for s, _ in curves["accuracy/val_step"]] == [4, 8, 12, 16]
    assert all(0 <= v <= 1 for _, v in curves["accuracy/train_step"])
    # the last validation between steps is the end of epoch 2: the same model as the epoch's own evaluation
    epoch = scalars(tmp_path / "logs" / "steps")
    assert curves["accuracy/val_step"][-1][1] == pytest.approx(epoch["accuracy/val"][-1][1], abs=1e-6)
    # measuring between steps changes no result: the per-epoch curves are those of the run without it
    base = scalars(tmp_path / "logs" / "plain")
    exact = "Using cpu device" in plain.stdout  # a GPU's kernels may add up in another order from run to run
    for tag in ("loss/train", "accuracy/train", "loss/val", "accuracy/val", "accuracy/test"):
        assert [s for s, _ in epoch[tag]] == [s for s, _ in base[tag]] == [1, 2]
        assert [v for _, v in epoch[tag]] == pytest.approx([v for _, v in base[tag]], abs=0 if exact else 0.01), tag
    assert not (tmp_path / "logs" / "plain" / "steps").exists() or not scalars(tmp_path / "logs" / "plain" / "steps")


@pytest.mark.quick
def test_bad_lab_flags_are_one_line_errors(data_dir, tmp_path):
    cases = [(["--log-every", 0], "--log-every"), (["--eval-every", "-1"], "--eval-every"),
             (["--model", "examples", "--activation", "tanh"], "--activation"),
             (["--model", "mlp", "--channels", "8"], "--channels"), (["--channels", "1,2,3,4,5"], "--channels"),
             (["--loss", "hinge"], "--loss"), (["--model", "cnn2", "--hidden", "64"], "--hidden")]
    tiny = ["--epochs", 1, "--limit", 200, "--data-dir", data_dir]
    results = run_each("train.py", [[*flags, *tiny] for flags, _ in cases], cwd=tmp_path)
    for (flags, named), (status, stderr) in zip(cases, results):
        assert status == 2 and "Traceback" not in stderr, (flags, stderr)
        assert len(stderr.strip().splitlines()) == 1 and named in stderr, (flags, stderr)


# ---------------------------------------------------------------- the reports' choices as flags

@pytest.mark.quick
def test_the_reports_choices_build_the_nets_they_describe():
    from lab import settings
    from net import build_model, count_parameters

    # the reports' plain setup: no augmentation, so no batch norm unless asked
    options = lambda *argv: settings.model_options(settings.parse(["--recipe", "plain", *argv]))  # noqa: E731
    assert options() == {} and options("--activation", "relu") == {}  # the nets' own defaults are not stored
    assert options("--model", "mlp", "--activation", "relu") == {"activation": "relu"}
    assert options("--channels", "32,64,64", "--hidden", "128") == {}
    assert options("--channels", "16,32,32,64", "--hidden", "64") == {"channels": [16, 32, 32, 64], "hidden": 64}
    assert options("--model", "cnn4bn", "--no-batchnorm") == {"batchnorm": False}
    deeper = build_model("cnn", channels=[32, 64, 64, 128])  # "what if we add a fourth conv block?"
    assert deeper(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(deeper) == 320 + 18_496 + 36_928 + 73_856 + 128 * 129 + 1_290  # 1x1 left: 128 in
    plain = build_model("cnn4bn", batchnorm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    tanh = build_model("mlp", activation="tanh")
    assert sum(isinstance(m, torch.nn.Tanh) for m in tanh.modules()) == 4 and \
        not any(isinstance(m, torch.nn.Sigmoid) for m in tanh.modules())


@pytest.mark.quick
def test_recipes_and_nesterov():
    import train
    from lab import settings
    plain = settings.parse(["--recipe", "plain"])
    assert (plain.optimizer, plain.lr, plain.scheduler, plain.label_smoothing, plain.nesterov, plain.weight_decay) == \
        ("sgd", 0.01, "none", 0.0, False, 0.0)
    assert settings.parse(["--recipe", "plain", "--lr", "0.05", "--nesterov"]).lr == 0.05  # a flag given wins
    ours = settings.parse([])
    assert (ours.optimizer, ours.lr, ours.scheduler, ours.label_smoothing) == ("adamw", 0.006, "onecycle", 0.1)
    model = torch.nn.Linear(2, 2)
    device = torch.device("cpu")
    def sgd(*argv):
        return train.make_optimizer(settings.parse(["--optimizer", "sgd", *argv]), model.parameters(), device)
    assert sgd().param_groups[0]["nesterov"] is True  # ours: Nesterov, as before
    assert sgd("--no-nesterov").param_groups[0]["nesterov"] is False
    assert sgd("--momentum", "0").param_groups[0]["nesterov"] is False  # torch refuses Nesterov without momentum


@pytest.mark.quick
def test_mse_loss_is_the_distance_to_the_one_hot_label():
    import train
    from lab import settings
    logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    p = logits.softmax(1)[0]
    expected = ((p[0] - 1) ** 2 + p[1] ** 2 + p[2] ** 2) / 3
    assert train.make_loss(settings.parse(["--loss", "mse", "--label-smoothing", "0"]))(logits, y) == \
        pytest.approx(expected.item())


def test_a_net_with_the_reports_choices_trains_and_test_py_rebuilds_it(data_dir, tmp_path):
    flags = ["--recipe", "ours", "--channels", "16,32,32,64", "--hidden", 64, "--activation", "tanh", "--loss", "mse",
             "--epochs", 2, "--limit", 2000, "--val-size", 500]
    proc = run_py("train.py", *flags, "--data-dir", data_dir, "--checkpoint", tmp_path / "net.pth", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(tmp_path / "net.pth", weights_only=True)
    assert ckpt["model_options"] == {"channels": [16, 32, 32, 64], "hidden": 64, "activation": "tanh"}
    assert ckpt["settings"]["training"]["loss"] == "mse" and ckpt["settings"]["training"]["recipe"] == "ours"
    proc = run_py("test.py", "--checkpoint", tmp_path / "net.pth", "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(re.search(r"Accuracy: ([\d.]+)%", proc.stdout).group(1))
    assert accuracy == pytest.approx(100 * ckpt["test_acc"], abs=0.006) and accuracy > 50  # as in training; it learned


@pytest.mark.quick
def test_net_py_prints_each_layers_shape_and_parameters():
    proc = run_py("net.py", "cnn", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Conv2d.*\[1, 32, 28, 28\]\s+320", proc.stdout)
    assert re.search(r"MaxPool2d.*\[1, 64, 3, 3\]", proc.stdout) and "Total params: 130,890" in proc.stdout
    bad = run_py("net.py", "resnet", cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: no network 'resnet'")


# ---------------------------------------------------------------- fair comparisons and chance

@pytest.mark.quick
def test_a_sweep_pairs_each_optimiser_with_its_own_learning_rate(data_dir, tmp_path):
    proc = run_py("sweep.py", "--optimizer", "sgd:lr=0.05", "adam:lr=0.001:weight-decay=0", "--recipe", "plain",
                  "--epochs", 1, "--limit", 500, "--val-size", 200, "--test-limit", 1000, "--name", "pairs",
                  "--data-dir", data_dir,
                  "--log-every", 1000, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep = tmp_path / "boardlog" / "pairs"
    assert sorted(p.name for p in sweep.iterdir()) == ["optimizer=adam_lr=0.001_weight-decay=0",
                                                       "optimizer=sgd_lr=0.05"]
    states = {run.name: torch.load(run / "last.pt", weights_only=True) for run in sweep.iterdir()}
    trained = {name: state["settings"]["training"] for name, state in states.items()}
    assert (trained["optimizer=sgd_lr=0.05"]["optimizer"], trained["optimizer=sgd_lr=0.05"]["lr"]) == ("sgd", 0.05)
    adam = trained["optimizer=adam_lr=0.001_weight-decay=0"]
    assert (adam["optimizer"], adam["lr"], adam["weight_decay"]) == ("adam", 0.001, 0.0)
    # report.py on it: a row per run, with the test accuracy each run's checkpoint was saved with
    report = run_py("report.py", sweep, "--out", tmp_path / "report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    runs = tables((tmp_path / "report" / "report.md").read_text(encoding="utf-8"))[0]
    column = runs[0].index("test (%)")
    for row in runs[1:]:
        saved = torch.load(sweep / row[0] / "net.pth", weights_only=True)["test_acc"]
        assert float(row[column]) == pytest.approx(100 * saved, abs=0.006), row
    assert sorted(row[0] for row in runs[1:]) == sorted(p.name for p in sweep.iterdir())
    bad = [(["--optimizer", "sgd:0.05"], "--optimizer sgd:0.05: pair other settings"),
           (["--optimizer", "sgd:speed=2"], "'speed' is not another training setting"),
           (["--optimizer", "sgd:lr=0.1", "--lr", "0.1", "0.2"], "--lr is paired with --optimizer"),
           (["--augment", "maybe"], "--augment takes yes or no")]
    results = run_each("sweep.py", [[*a, "--name", "bad"] for a, _ in bad], cwd=tmp_path)
    for (_, words), (status, stderr) in zip(bad, results):
        assert status == 2 and stderr.strip().splitlines() == [stderr.strip()], stderr
        assert words in stderr and "Traceback" not in stderr
    assert not (tmp_path / "boardlog" / "bad").exists()


def test_report_groups_seeds_into_mean_and_sd(data_dir, tmp_path):
    proc = run_py("sweep.py", "--lr", "0.01", "0.003", "--seed", 1, 2, "--model", "mlp", *SMALL, "--name", "s",
                  "--log-every", 4, "--eval-every", 4, "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_py("report.py", tmp_path / "boardlog" / "s", "--out", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    runs, seeds, val, test = tables(markdown)
    assert "## Over seeds: mean ± standard deviation" in markdown
    assert seeds[0] == ["lr", "n", "seeds", "best val (%)", "best epoch", "test (%)", "steps to 98%", "steps to 99%"]
    assert [row[:3] for row in seeds[1:]] == [["0.01", "2", "1 2"], ["0.003", "2", "1 2"]]
    for row in seeds[1:]:  # the mean and sd of the runs' own numbers, from their saved state
        best = [torch.load(tmp_path / "boardlog" / "s" / f"lr={row[0]}_seed={s}" / "last.pt", weights_only=True)["best"]
                for s in (1, 2)]
        values = [100 * b["val_acc"] for b in best]
        assert row[3] == f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
        tests = [100 * b["test_acc"] for b in best]
        assert row[5] == f"{statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f}"
    assert val[0] == ["epoch", "lr=0.01", "lr=0.003"] and len(val) == 1 + 2 and " ± " in val[2][1]
    assert test[0] == val[0] and len(test) == 3
    # steps to 98%/99% are read off each run's validation between steps (every 4): "–" where never reached
    assert runs[0][-2:] == ["steps to 98%", "steps to 99%"]
    for row in runs[1:]:
        points = scalars(tmp_path / "boardlog" / "s" / row[0] / "steps")["accuracy/val_step"]
        assert [s for s, _ in points] == [4, 8, 12, 16]
        for cell, target in zip(row[-2:], (0.98, 0.99)):
            first = next((s for s, v in points if v >= target), None)
            assert cell == ("–" if first is None else f"{first:,}")
    from PIL import Image
    with Image.open(tmp_path / "r" / "curves.png") as image:
        assert image.size[0] > 1000 and image.size[1] > 800  # four panels


@pytest.mark.quick
def test_steps_to_reads_the_first_step_at_or_over_the_target():
    import importlib.util
    spec = importlib.util.spec_from_file_location("report_script", ROOT / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    reached, tag = report.steps_to({"accuracy/train_step": {10: 0.5, 20: 0.981, 30: 0.97, 40: 0.995}})
    assert reached == {0.98: 20, 0.99: 40} and tag == "accuracy/train_step"
    reached, tag = report.steps_to({"accuracy/train_step": {10: 0.999}, "accuracy/val_step": {5: 0.9, 15: 0.985}})
    assert reached == {0.98: 15, 0.99: None} and tag == "accuracy/val_step"  # validation first, where measured
    assert report.mean_sd([0.99, 0.98, None]) == "98.50 ± 0.71 (2 of 3)"
