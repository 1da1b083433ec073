"""The best recipe's tools, each on its own (lab/augment.py, train.make_average), and the recipe in train.py."""
import signal

import pytest
import torch

from conftest import finish, needs_posix_signals, run_py, start_paused


def batch(n=64, seed=0):
    """n MNIST-like strokes: a bar and a ring of ink on a blank 28x28, normalised as train.py normalises."""
    from lab.data import normalize
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):
        top, left = (int(v) for v in torch.randint(5, 9, (2,), generator=g))
        img[i, top:top + 14, left + 5:left + 8] = 255
        img[i, top + 2, left:left + 12] = 255
    return normalize(img)


def ink(x):
    """How much ink each image holds: its pixels above the background, summed."""
    from lab.augment import BACKGROUND
    return (x - BACKGROUND).flatten(1).sum(1)


@pytest.mark.quick
def test_the_extras_are_off_by_default_and_change_nothing():
    from lab.augment import Changes, augment
    x = batch()
    plain = augment(x, torch.Generator().manual_seed(3))
    off = Changes(elastic=0, thickness=0, lowres=0)
    assert torch.equal(plain, augment(x, torch.Generator().manual_seed(3), off))
    still = augment(x, torch.Generator().manual_seed(3), Changes(degrees=0, shift=0, scale=0))
    assert torch.allclose(still, x, atol=1e-5)  # nothing asked, nothing moved


@pytest.mark.quick
def test_elastic_fields_are_smooth_one_per_image_and_of_the_size_asked():
    from lab.augment import elastic_field
    x = batch(8)
    field = elastic_field(8, x, torch.Generator().manual_seed(0), pixels=1.4)  # grid units: 2/28 per pixel
    px = field * 28 / 2
    assert px.shape == (8, 28, 28, 2)
    rms = px.square().mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full((8,), 1.4), atol=1e-4)  # each image: 1.4 pixels on average
    # smooth: neighbouring pixels move almost together (white noise would give a correlation near 0)
    a, b = px[:, :, :-1].flatten(), px[:, :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95
    assert not torch.allclose(px[0], px[1], atol=0.1)  # a field of its own for each image


@pytest.mark.quick
def test_the_affine_grid_is_torchs_own_written_out():
    """augment.affine_grid against F.affine_grid of the same draws, on images taller than wide (rows and columns
    apart). Bound: 1e-6; measured 2.4e-7 here, 4.8e-7 on a batch of 128 at 28x28: both add three float32
    products of numbers under 2, each rounded to 6e-8 relative."""
    import math

    import torch.nn.functional as F

    from lab.augment import affine_grid, uniform
    x = torch.zeros(64, 1, 32, 24)
    grid = affine_grid(64, x, torch.Generator().manual_seed(5), 12.0, 2.5, 0.12)
    r = uniform(64, torch.Generator().manual_seed(5), x.device, 4)  # the same draws
    angle, zoom = r[:, 0] * 12.0 * math.pi / 180, 1 + r[:, 1] * 0.12
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = r[:, 2] * 2.5 * 2 / 28, r[:, 3] * 2.5 * 2 / 28
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    expected = F.affine_grid(theta, [64, 1, 32, 24], align_corners=False)
    assert grid.shape == expected.shape == (64, 32, 24, 2)
    assert (grid - expected).abs().max() < 1e-6


@pytest.mark.quick
def test_the_pens_dilation_is_max_pooling_to_the_bit():
    import torch.nn.functional as F

    from lab.augment import dilation
    x = batch(40)
    x[3, 0, 0, 0] = 9.0  # a corner and an edge: where the padding must never win
    x[4, 0, 27, 13] = -9.0
    assert torch.equal(dilation(x), F.max_pool2d(x, 3, stride=1, padding=1))
    assert torch.equal(-dilation(-x), -F.max_pool2d(-x, 3, stride=1, padding=1))  # erosion, as pen_width thins


@pytest.mark.quick
def test_pen_width_thickens_or_thins_the_share_asked():
    from lab.augment import pen_width
    x = batch(200)
    before = ink(x)
    after = ink(pen_width(x, torch.Generator().manual_seed(1), 0.5))
    changed = (after - before).abs() > 1e-3
    assert 0.35 < changed.float().mean() < 0.65  # about half the images, as asked
    assert (after[changed] > before[changed]).any() and (after[changed] < before[changed]).any()  # both ways
    assert torch.equal(pen_width(x, torch.Generator().manual_seed(1), 0.0), x)


@pytest.mark.quick
def test_lowres_draws_the_share_asked_on_a_coarser_grid():
    from lab.augment import coarser
    x = batch(200)
    torch.manual_seed(0)  # the grid size is drawn from torch's own generator
    out = coarser(x, torch.Generator().manual_seed(2), 0.3)
    changed = (out - x).flatten(1).abs().amax(1) > 1e-3
    assert 0.2 < changed.float().mean() < 0.4
    # each changed image is its own drawing on one coarse grid, enlarged again blocky or smoothly
    import torch.nn.functional as F

    from lab.augment import LOWRES_SIZES
    for i in changed.nonzero().flatten().tolist():
        small = {s: F.interpolate(x[i:i + 1], size=(s, s), mode="area") for s in LOWRES_SIZES}
        enlarged = [F.interpolate(t, size=(28, 28), mode=m, **({} if m == "nearest" else {"align_corners": False}))
                    for t in small.values() for m in ("nearest", "bilinear")]
        assert any(torch.allclose(out[i:i + 1], e, atol=1e-6) for e in enlarged), i


@pytest.mark.quick
def test_ema_is_the_moving_average_of_the_weights_with_a_warm_up():
    import argparse

    import train
    model = torch.nn.Linear(1, 1, bias=False)
    average, update = train.make_average(argparse.Namespace(ema=0.9), model)
    expected = float(model.weight.detach())
    for t in range(1, 30):
        with torch.no_grad():
            model.weight.fill_(float(t))  # the weights after step t
        update(t)
        decay = min(0.9, (1 + t) / (10 + t))
        expected = decay * expected + (1 - decay) * t
        assert float(average.weight) == pytest.approx(expected, rel=1e-6)
    assert float(model.weight.detach()) == 29.0  # the model itself is left alone
    assert train.make_average(argparse.Namespace(ema=0.0), model) == (model, None)


def test_the_best_recipe_is_recorded_and_saves_its_average(data_dir, tmp_path):
    proc = run_py("train.py", "--recipe", "best", "--epochs", 1, "--limit", 1000, "--val-size", 200,
                  "--test-limit", 500, "--data-dir", data_dir, "--logdir", tmp_path / "logs", "--run-name", "r",
                  "--checkpoint", tmp_path / "net.pth", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(tmp_path / "net.pth", weights_only=True)
    from lab import settings
    trained = ckpt["settings"]["training"]
    recipe = settings.RECIPES["best"]
    assert {k: trained[k] for k in recipe if k != "epochs"} == {k: v for k, v in recipe.items() if k != "epochs"}
    assert trained["recipe"] == "best" and trained["epochs"] == 1  # a flag given wins over the recipe
    assert ckpt["model_options"] == {"batchnorm": True, "norm_after_pool": 2}  # --augment: after the first 2 pools
    state = torch.load(tmp_path / "logs" / "r" / "last.pt", weights_only=True)
    # the saved net is the average, not the last step's weights
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in state["average"].items())
    assert not all(torch.equal(ckpt["state_dict"][k], v) for k, v in state["model"].items())


@needs_posix_signals
def test_an_interrupted_run_with_ema_resumes_to_the_same_net(data_dir, tmp_path):
    """The average is part of last.pt: stopped in epoch 2 and resumed, the run ends where it would have."""
    flags = ["--recipe", "best", "--epochs", 2, "--limit", 1000, "--val-size", 200, "--test-limit", 500,
             "--data-dir", data_dir]
    whole = run_py("train.py", *flags, "--logdir", tmp_path / "a", "--checkpoint", tmp_path / "a.pth", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    # 1,000 images in batches of 128: 8 steps an epoch, so step 10 is the second step of epoch 2
    proc = start_paused(10, "train.py", *flags, "--logdir", tmp_path / "b", "--run-name", "r",
                        "--checkpoint", tmp_path / "b.pth", cwd=tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, 300, "the run")
    assert proc.returncode == 130, out + err
    done = run_py("train.py", "--resume", tmp_path / "b" / "r", "--data-dir", data_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    a, b = (torch.load(tmp_path / f"{n}.pth", weights_only=True) for n in "ab")
    assert a["epoch"] == b["epoch"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.quick
def test_the_default_is_robust_and_older_records_keep_the_recipe_of_their_day():
    from lab import settings
    args = settings.parse([])
    assert args.recipe == "robust" and args.augment and args.ema == 0.999 and args.epochs == 6
    assert {k: getattr(args, k) for k in settings.RECIPES["robust"]} == settings.RECIPES["robust"]
    ours = settings.parse(["--recipe", "ours"])  # the default until 2026-12: MNIST's images as they are
    assert not ours.augment and ours.ema == 0 and ours.thickness == 0 and ours.lowres == 0
    # a record of the old default, and one written before --thickness, --lowres and --ema existed: both mean ours
    saved = settings.record(ours)
    assert not settings.read_record(saved, "last.pt")[0]["augment"]
    for name in ("thickness", "lowres", "ema"):
        del saved["training"][name]
    trained = settings.read_record(saved, "last.pt")[0]
    assert (trained["recipe"], trained["thickness"], trained["lowres"], trained["ema"]) == ("ours", 0.0, 0.0, 0.0)
    del saved["training"]["recipe"]  # before recipes: the default of its day
    assert settings.read_record(saved, "last.pt")[0]["ema"] == 0.0
    saved["training"]["recipe"] = "newer"
    from lab.cli import UserError
    with pytest.raises(UserError, match="last.pt names a recipe this code does not know"):
        settings.read_record(saved, "last.pt")
