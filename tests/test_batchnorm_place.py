"""Batch norm's place in cnn's blocks: after the pooling in the default run (but in the last block), before it in
every net saved before 2026-12-07, and after it in every block in those saved that day by 25936df.

The files in tests/fixtures/norm-before-pool were written by the lab before the change (see its README).
"""
import re
import shutil

import pytest
import torch

from conftest import ROOT, run_py

FIXTURES = ROOT / "tests" / "fixtures" / "norm-before-pool"


def layers(model, block=0):
    """The kinds of layer of one of cnn's blocks, in order."""
    return [type(layer).__name__ for layer in model.features[4 * block : 4 * block + 4]]


AFTER = ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
BEFORE = ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]


@pytest.mark.quick
def test_the_default_run_normalises_after_the_pooling_but_in_the_last_block_and_a_record_from_before_it_before():
    from lab import settings
    from lab.cli import UserError
    from net import build_model
    options = lambda *argv: settings.model_options(settings.parse(list(argv)))  # noqa: E731
    assert options() == {"batchnorm": True, "norm_after_pool": 2}
    assert options("--channels", "32,64,64,128") == {"channels": [32, 64, 64, 128], "batchnorm": True,
                                                     "norm_after_pool": 3}
    assert options("--norm-after-pool", "0") == {"batchnorm": True}
    assert options("--recipe", "ours") == {}  # no batch norm: nothing to place
    assert options("--no-batchnorm") == {}
    assert options("--model", "cnn4bn") == {}  # cnn4bn's batch norm stays where its lab report has it
    with pytest.raises(UserError, match="--norm-after-pool places batch norm, which this run has not"):
        options("--recipe", "ours", "--norm-after-pool", "1")
    with pytest.raises(UserError, match="conv blocks, this net has 2: give 0 to 2"):
        options("--channels", "32,64", "--norm-after-pool", "3")
    default = build_model("cnn", **options())
    assert [layers(default, block) for block in range(3)] == [AFTER, AFTER, BEFORE]
    assert [layers(build_model("cnn", batchnorm=True), block) for block in range(3)] == [BEFORE] * 3
    # The nets of 25936df, which saved True: after the pool in every block.
    saved_that_day = build_model("cnn", batchnorm=True, norm_after_pool=True)
    assert [layers(saved_that_day, block) for block in range(3)] == [AFTER] * 3
    # A record of the default written before the setting existed: batch norm before the pooling, as it ran.
    saved = settings.record(settings.parse([]))
    del saved["training"]["norm_after_pool"]
    assert settings.model_options(settings.read_record(saved, "last.pt")[0]) == {"batchnorm": True}


@pytest.mark.parametrize("name", ["net.pth.bin", "net-076fe8d.pth.bin", "net-25936df.pth.bin"])
def test_a_net_saved_before_loads_and_tests(name, data_dir, tmp_path):
    checkpoint = tmp_path / name.removesuffix(".bin")
    shutil.copy(FIXTURES / name, checkpoint)
    proc = run_py("test.py", "--checkpoint", checkpoint, "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(checkpoint, weights_only=True)
    accuracy = float(re.search(r"Accuracy: ([\d.]+)%", proc.stdout).group(1))
    # The test set the run measured, read again: the same figure up to another CPU's rounding (bf16 or fp32 here);
    # a net rebuilt in the other order reads at random (about 10%) or does not load.
    assert accuracy == pytest.approx(100 * saved["test_acc"], abs=1.0)


def test_a_run_folder_saved_before_resumes_with_batch_norm_where_it_was(data_dir, tmp_path):
    run = tmp_path / "boardlog" / "robust"  # its net.pth is boardlog/robust/net.pth: resumed from the folder above
    run.mkdir(parents=True)
    shutil.copy(FIXTURES / "net.pth.bin", run / "net.pth")
    shutil.copy(FIXTURES / "last.pt.bin", run / "last.pt")
    done = run_py("train.py", "--resume", run, "--data-dir", data_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Resuming" in done.stdout and "epoch  2/2" in done.stdout
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    from lab.checkpoint import load_checkpoint
    model, ckpt = load_checkpoint(run / "net.pth")
    assert ckpt["model_options"] == {"channels": [8, 16, 16], "hidden": 32, "batchnorm": True}
    assert [layers(model, block) for block in range(3)] == [BEFORE] * 3


def test_a_run_state_whose_weights_do_not_fit_its_settings_is_refused_in_one_line(data_dir, tmp_path):
    """last.pt's settings record is what rebuilds its net: one saying batch norm after the pool, given weights with it
    before, must stop at once with one line, not a traceback from load_state_dict."""
    run = tmp_path / "boardlog" / "robust"
    run.mkdir(parents=True)
    shutil.copy(FIXTURES / "net.pth.bin", run / "net.pth")
    state = torch.load(FIXTURES / "last.pt.bin", weights_only=True)
    state["settings"]["training"]["norm_after_pool"] = True
    torch.save(state, run / "last.pt")
    done = run_py("train.py", "--resume", run, "--data-dir", data_dir, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "holds weights that do not fit the net its settings build" in done.stderr
