"""The lab-report experiments: the seed labs' networks, sweep.py and report.py.

One small real sweep (two models x two learning rates, one epoch on 2,000 images)
is shared by the sweep, report and test.py checks.
"""
import re
import shutil
import signal

import pytest
import torch

from conftest import finish, needs_posix_signals, run_py, start_paused
from net import MODELS, build_model, count_parameters


def conv(c_in, c_out, k, bias=True):
    return c_out * (c_in * k * k + bias)


def linear(n_in, n_out):
    return n_out * (n_in + 1)


def batchnorm(c):
    return 2 * c  # weight and bias; the running statistics are buffers, not parameters


# Expected sizes worked out from each lab's layer list, not from the models themselves.
EXPECTED = {
    "cnn": conv(1, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3) + linear(64 * 3 * 3, 128) + linear(128, 10),
    "mlp": linear(784, 128) + linear(128, 256) + linear(256, 128) + linear(128, 64) + linear(64, 10),
    "cnn2": conv(1, 16, 5) + conv(16, 32, 5) + linear(32 * 7 * 7, 10),
    "cnn4bn": sum(conv(i, o, 3, bias=False) + batchnorm(o) for i, o in [(1, 16), (16, 32), (32, 64), (64, 128)])
              + linear(128 * 4 * 4, 1024) + linear(1024, 128) + linear(128, 10),
    "examples": conv(1, 32, 3) + conv(32, 64, 3) + linear(9216, 128) + linear(128, 10),
}


@pytest.mark.quick
@pytest.mark.parametrize("name", list(EXPECTED))
def test_model_size_and_shapes(name):
    model = build_model(name).to(memory_format=torch.channels_last)
    assert count_parameters(model) == EXPECTED[name]
    x = torch.randn(3, 1, 28, 28).contiguous(memory_format=torch.channels_last)  # as train.py feeds it
    model.train()
    assert model(x).shape == (3, 10)
    model.eval()
    assert model(x).shape == (3, 10)


@pytest.mark.quick
def test_every_model_is_checked():
    assert set(MODELS) == set(EXPECTED)
    assert count_parameters(build_model("cnn")) == 130_890  # the design card's net must not change


@pytest.mark.quick
def test_cnn_only_options_are_refused_for_the_lab_nets():
    from lab import settings
    from lab.cli import UserError
    with pytest.raises(UserError, match="--model mlp has no dropout option"):
        settings.model_options(settings.parse(["--model", "mlp", "--dropout", "0.2"]))
    with pytest.raises(UserError, match="no batchnorm option"):
        settings.model_options(settings.parse(["--model", "cnn2", "--batchnorm"]))
    assert settings.model_options(settings.parse(["--batchnorm", "--dropout", "0.1"])) == \
        {"batchnorm": True, "norm_after_pool": 2, "dropout": 0.1}


@pytest.mark.quick
def test_augment_turns_batchnorm_on_for_cnn_only():
    from lab import settings
    def options(*argv):
        return settings.model_options(settings.parse(list(argv)))
    assert options() == {"batchnorm": True, "norm_after_pool": 2}  # the default run, --recipe robust, augments
    assert options("--recipe", "ours") == {}  # the design card's plain net, on MNIST's images as they are
    assert options("--recipe", "ours", "--augment") == {"batchnorm": True, "norm_after_pool": 2}
    assert options("--augment", "--no-batchnorm") == {}
    assert options("--augment", "--model", "cnn2") == {}  # the fixed lab nets have no such option
    assert options("--augment", "--model", "mlp") == {}


# --recipe ours: the design card's net as it is (the default, robust, adds batch norm to cnn)
SWEEP = ["--recipe", "ours", "--model", "cnn", "mlp", "--lr", "0.01", "0.001", "--epochs", 1, "--limit", 2000,
         "--val-size", 1000, "--name", "grid"]
RUNS = ["model=cnn_lr=0.01", "model=cnn_lr=0.001", "model=mlp_lr=0.01", "model=mlp_lr=0.001"]


@pytest.fixture(scope="module")
def sweep(data_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    proc = run_py("sweep.py", *SWEEP, "--data-dir", data_dir, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"dir": work, "sweep_dir": work / "boardlog" / "grid", "proc": proc, "data_dir": data_dir}


def tables(markdown):
    """Each markdown table as a list of rows of cells (header first, the |---| rule left out)."""
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|[:\-|]+\|", line):
                current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def test_sweep_trains_every_run_into_its_folder(sweep):
    out = sweep["proc"].stdout
    for i in range(1, 5):
        assert f"[run {i}/4]" in out
    assert "left" in out  # a time estimate once a run has finished
    assert sorted(p.name for p in sweep["sweep_dir"].iterdir()) == sorted(RUNS)
    for run in RUNS:
        assert (sweep["sweep_dir"] / run / "net.pth").is_file()
        assert (sweep["sweep_dir"] / run / "last.pt").is_file()
        assert list((sweep["sweep_dir"] / run).glob("events.out.tfevents.*"))


def test_sweep_run_again_skips_finished_runs(sweep, monkeypatch, capsys):
    import sweep as sweep_py
    monkeypatch.chdir(sweep["dir"])
    assert sweep_py.main([*map(str, SWEEP), "--data-dir", str(sweep["data_dir"])]) == 0
    out = capsys.readouterr().out
    assert out.count("finished already, skipped") == 4
    assert "Using" not in out  # nothing trained, no data loaded


def test_sweep_refuses_to_mix_settings_into_a_sweep(sweep, monkeypatch):
    import sweep as sweep_py
    from lab.cli import UserError
    monkeypatch.chdir(sweep["dir"])
    args = [str(2 if a == 1 else a) for a in SWEEP]  # --epochs 2 into the sweep that ran 1
    with pytest.raises(UserError, match="was trained with epochs=1, but this sweep asks for epochs=2"):
        sweep_py.main(args)


@pytest.mark.parametrize("args, message", [
    (["--model", "mlp", "--dropout", "0.2"], "has no dropout option"),
    (["--lr", "0.1", "fast"], "--lr"),
    (["--checkpoint", "x.pth"], "set by the sweep"),
    (["--name", "a/b"], "plain folder name"),
])
@pytest.mark.quick
def test_sweep_user_errors_stop_it_before_anything_runs(tmp_path, monkeypatch, capsys, args, message):
    import sweep
    from lab.cli import UserError
    monkeypatch.chdir(tmp_path)
    with pytest.raises((UserError, SystemExit)) as e:  # run_script prints either as one line, exit 2
        sweep.main(args)
    assert message in (str(e.value) if e.type is UserError else capsys.readouterr().err)
    assert e.type is UserError or e.value.code == 2
    assert not (tmp_path / "boardlog").exists()


def test_report_tables_and_plot(sweep):
    out = sweep["dir"] / "report"
    proc = run_py("report.py", sweep["sweep_dir"], "--out", out, cwd=sweep["dir"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    markdown = (out / "report.md").read_text(encoding="utf-8")
    runs, per_epoch, test_per_epoch = tables(markdown)  # no seeds: no table of means
    assert runs[0] == ["run", "model", "lr", "params", "s/epoch", "best val (%)", "best epoch", "test (%)", "epochs",
                       "steps to 98%", "steps to 99%"]
    assert [row[0] for row in runs[1:]] == RUNS  # in the order they ran
    params = {row[0]: row[3] for row in runs[1:]}
    assert params["model=cnn_lr=0.01"] == f"{EXPECTED['cnn']:,}"
    assert params["model=mlp_lr=0.01"] == f"{EXPECTED['mlp']:,}"
    assert all(row[6] == "1" and row[8] == "1" and 0 <= float(row[7]) <= 100 for row in runs[1:])
    assert per_epoch[0] == ["epoch", "model=cnn, lr=0.01", "model=cnn, lr=0.001", "model=mlp, lr=0.01",
                            "model=mlp, lr=0.001"]
    assert len(per_epoch) == 2 and per_epoch[1][0] == "1"
    assert [row[5] for row in runs[1:]] == per_epoch[1][1:]  # best val = the one epoch's val
    assert [row[7] for row in runs[1:]] == test_per_epoch[1][1:] and test_per_epoch[0] == per_epoch[0]
    assert "Shared by all runs:" in markdown and "epochs 1" in markdown
    assert tables(proc.stdout) == [runs, per_epoch, test_per_epoch]  # the same tables on the terminal
    from lab.checkpoint import load_file
    for row in runs[1:]:  # test (%) is the test accuracy of the checkpoint the run saved
        assert float(row[7]) == pytest.approx(100 * load_file(sweep["sweep_dir"] / row[0] / "net.pth")["test_acc"],
                                              abs=0.006)

    from PIL import Image
    with Image.open(out / "curves.png") as image:
        image.verify()
    with Image.open(out / "curves.png") as image:
        assert image.size[0] > 600 and image.size[1] > 300


def test_test_py_evaluates_a_sweep_checkpoint(sweep):
    run = sweep["sweep_dir"] / "model=mlp_lr=0.01"
    proc = run_py("test.py", "--checkpoint", run / "net.pth", "--data-dir", sweep["data_dir"], cwd=sweep["dir"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"mlp with {EXPECTED['mlp']:,} parameters" in proc.stdout
    accuracy = float(re.search(r"Accuracy: ([\d.]+)%", proc.stdout).group(1))
    from lab.checkpoint import load_file
    assert accuracy == pytest.approx(100 * load_file(run / "net.pth")["test_acc"], abs=0.006)  # as in training


@needs_posix_signals
def test_sweep_ctrl_c_then_continue(data_dir, tmp_path):
    args = ["--model", "mlp", "--epochs", 3, "--limit", 2000, "--val-size", 500, "--name", "stop",
            "--data-dir", data_dir]
    # --limit 2000 in batches of 128: 16 steps an epoch, so step 18 is the second step of epoch 2.
    proc = start_paused(18, "sweep.py", *args, cwd=tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, 300, "the run")
    assert proc.returncode == 130, out + err
    assert "Continue it" in err and "--name stop" in err and "Traceback" not in err

    again = run_py("sweep.py", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "after epoch 1" in again.stdout and "epoch  1/3" not in again.stdout
    assert "epoch  2/3" in again.stdout and "epoch  3/3" in again.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "boardlog" / "stop" / "run"))  # one run: nothing varies
    events.Reload()
    assert [e.step for e in events.Scalars("accuracy/val")] == [1, 2, 3]  # each epoch once, the curve unbroken


def test_report_edge_cases(sweep, tmp_path):
    """An empty folder, a missing one, a run that crashed half way and one that crashed at once."""
    from torch.utils.tensorboard import SummaryWriter

    from lab.files import save_torch
    empty = tmp_path / "empty"
    empty.mkdir()
    crashed = tmp_path / "crashed"  # stopped after 1 of 3 epochs: events and last.pt, no hparams
    with SummaryWriter(str(crashed)) as w:
        for tag, value in [("loss/train", 0.5), ("accuracy/val", 0.9), ("accuracy/test", 0.89)]:
            w.add_scalar(tag, value, 1)
    save_torch({"epoch": 1, "args": {"model": "mlp", "epochs": 3, "lr": 0.01}}, crashed / "last.pt")
    events_only = tmp_path / "events-only"  # last.pt gone: the settings come from the logged hparams
    events_only.mkdir()
    for f in (sweep["sweep_dir"] / "model=mlp_lr=0.01").glob("events.out.tfevents.*"):
        shutil.copy(f, events_only)
    stale = tmp_path / "stale"  # crashed in its first epoch: an events file without scalars
    with SummaryWriter(str(stale)) as w:
        w.add_text("note", "started")

    proc = run_py("report.py", empty, crashed, stale, tmp_path / "missing", sweep["sweep_dir"], events_only,
                  "--out", tmp_path / "report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for text in ["empty: no TensorBoard event files", "missing: no such folder", "stale: no epoch finished",
                 "crashed: only 1 of its 3 epochs"]:
        assert text in proc.stderr
    runs, per_epoch, _ = tables((tmp_path / "report" / "report.md").read_text(encoding="utf-8"))
    assert len(runs) == 1 + 6 and len(per_epoch) == 1 + 1
    crashed = next(row for row in runs if row[0].endswith("crashed"))
    assert crashed[runs[0].index("epochs")] == "1 of 3" and f"{EXPECTED['mlp']:,}" in crashed
    same = [row for row in runs if row[0].endswith(("events-only", "model=mlp_lr=0.01"))]
    assert len(same) == 2 and same[0][1:] == same[1][1:]  # the same run, read with or without its last.pt

    import report
    from lab.cli import UserError
    for path in (empty, tmp_path / "missing", stale):  # nothing to report: a UserError, which is one line, exit 2
        with pytest.raises(UserError, match="no runs with a finished epoch"):
            report.main([str(path), "--out", str(tmp_path / "nothing")])
    assert not (tmp_path / "nothing").exists()


@pytest.mark.quick
def test_a_sweeps_runs_are_made_from_settings_and_passed_on_as_the_same_settings():
    """Each run is settings.changed(base, grid values), its dependent defaults worked out again; with --jobs N
    its flags (sweep.as_flags) parse back, in a train.py of its own, to exactly the same settings."""
    import sweep
    from lab import settings
    base = settings.parse(["--recipe", "plain", "--channels", "16,32", "--no-augment", "--device", "cpu"])
    run = settings.changed(base, {"optimizer": sweep.value_of("optimizer", "adamw"), "lr": sweep.value_of("lr", "1e-3"),
                                  "ema": sweep.as_value("ema", "0.9"), "compile": True})
    assert run.weight_decay == 0.05 and base.weight_decay == 0.0  # adamw's own decay, worked out again
    assert run.lr == 0.001 and run.momentum == base.momentum and run.channels == [16, 32]
    assert vars(settings.parse(sweep.as_flags(run))) == vars(run)
    with pytest.raises(Exception, match="argument --optimizer: invalid choice: 'adamx'"):
        sweep.value_of("optimizer", "adamx")
    with pytest.raises(Exception, match="argument --lr: "):
        sweep.value_of("lr", "fast")
