"""Temperature scaling and the calibration error (lab/calibration.py), and the temperature a checkpoint keeps."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import run_py


def ece_by_hand(probabilities, labels, bins=15):
    """Guo et al.'s expected calibration error in numpy, apart from lab/calibration.py: the images whose
    confidence lies in (k/bins, (k+1)/bins], each bin's |accuracy - mean confidence| weighted by its share."""
    p = np.asarray(probabilities, dtype=np.float64)
    confidence, right = p.max(axis=1), p.argmax(axis=1) == np.asarray(labels)
    ece = 0.0
    for k in range(bins):
        inside = (confidence > k / bins) & (confidence <= (k + 1) / bins)
        if inside.any():
            ece += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return ece


def sample(n=20000, temperature=0.5, seed=0):
    """Logits of n images and digits drawn from softmax(logits / temperature): a net whose probabilities,
    read at temperature 1, are too soft exactly as label smoothing makes them."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g) * 3
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=g).flatten()
    return logits, labels


@pytest.mark.quick
def test_the_temperature_fitted_is_the_one_the_digits_were_drawn_at():
    from lab.calibration import calibration_error, fit_temperature, rescale
    logits, labels = sample()
    probabilities = logits.softmax(1)
    temperature = fit_temperature(probabilities, labels)
    assert temperature == pytest.approx(0.5, rel=0.05)  # 20,000 draws: the fit is within a few percent
    rescaled = rescale(probabilities, temperature)
    assert torch.allclose(rescaled, (logits / temperature).softmax(1), atol=1e-6)
    assert torch.equal(rescaled.argmax(1), probabilities.argmax(1))  # the same digits read
    before, after = calibration_error(probabilities, labels), calibration_error(rescaled, labels)
    assert before["ece"] > 0.1  # too unsure by ~15 points...
    assert after["ece"] < 0.02  # ...then honest
    assert (before["ece"], after["ece"]) == pytest.approx((ece_by_hand(probabilities, labels),
                                                            ece_by_hand(rescaled, labels)), abs=1e-6)
    # a net already calibrated is left as it is
    assert fit_temperature(rescaled, labels) == pytest.approx(1.0, rel=0.05)


@pytest.mark.quick
def test_the_calibration_error_of_a_few_images_by_hand():
    from lab.calibration import calibration_error
    probabilities = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 0, 1])  # sure and right, sure and wrong; unsure and right twice
    result = calibration_error(probabilities, labels)
    # two bins hold two images each: 95% sure, half right (0.45 apart); 55% sure, all right (0.45 apart)
    assert result["ece"] == pytest.approx(0.45)
    assert ece_by_hand(probabilities, labels) == pytest.approx(0.45)
    assert result["confidence"] == pytest.approx(0.75) and result["accuracy"] == 0.75
    assert sum(b[2] for b in result["bins"]) == 4 and len(result["bins"]) == 15


@pytest.mark.quick
def test_a_confidence_on_a_bin_edge_counts_in_the_bin_it_closes():
    """The bins are (low, high], as Guo et al. count them: a confidence exactly at a bin's high edge is in
    that bin, not the next ([low, high) would move each of these one bin up, and 1.0 into the last twice)."""
    from lab.calibration import calibration_error
    bins = calibration_error(torch.tensor([[0.9, 0.1]]), torch.tensor([0]))["bins"]
    highs = torch.tensor([high for _, high, *_ in bins])  # the edges as the function itself draws them
    confidence = highs[7:]  # 8/15 to 1: above one half, each the larger of its two probabilities
    probabilities = torch.stack([confidence, 1 - confidence], dim=1)
    counts = [count for _, _, count, *_ in calibration_error(probabilities, torch.zeros(8, dtype=torch.long))["bins"]]
    assert counts == [0] * 7 + [1] * 8


@pytest.mark.quick
def test_a_loaded_net_reads_at_its_temperature_and_an_older_one_as_before(tmp_path):
    from lab.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
    from net import Net
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        raw = net(x)
    old = make_checkpoint(net, "cnn", {}, {})
    save_checkpoint(old, tmp_path / "old.pth")
    save_checkpoint({**old, "temperature": 0.25}, tmp_path / "new.pth")
    before, _ = load_checkpoint(tmp_path / "old.pth")
    after, ckpt = load_checkpoint(tmp_path / "new.pth")
    with torch.no_grad():
        assert torch.equal(before(x), raw)  # no temperature: the logits as they were
        assert torch.allclose(after(x), raw / 0.25, rtol=1e-6) and torch.equal(after(x).argmax(1), raw.argmax(1))
    assert ckpt["temperature"] == 0.25 and after.temperature == 0.25
    assert all(torch.equal(after.state_dict()[k], v) for k, v in net.state_dict().items())  # the weights unchanged


def test_training_saves_a_temperature_that_makes_test_py_honest(trained, data_dir, tmp_path):
    from lab.checkpoint import load_checkpoint
    from lab.data import load_split, normalize
    from lab.metrics import evaluate
    ckpt = torch.load(trained["checkpoint"], weights_only=True)
    assert 0.2 < ckpt["temperature"] < 1.0  # label smoothing made the net too unsure: a temperature under 1
    proc = run_py("test.py", "--checkpoint", trained["checkpoint"], "--data-dir", data_dir, "--precision", "fp32",
                  "--json", tmp_path / "t.json", "--report", tmp_path / "report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert result["temperature"] == ckpt["temperature"]
    assert f"Calibration at temperature {ckpt['temperature']:g}: mean confidence" in proc.stdout
    assert f"ECE {100 * result['ece']:.2f}% (15 bins)" in proc.stdout
    assert sum(b["count"] for b in result["reliability"]) == result["total"] == 10000
    assert (tmp_path / "report" / "reliability.png").is_file()
    # made again here: the net as loaded reads at its temperature, and test.py's figure is its ECE (by hand)
    model, _ = load_checkpoint(trained["checkpoint"])
    images, labels = load_split(False, data_dir)
    probabilities = evaluate(model, normalize(images), labels)["probabilities"].double().numpy()
    honest = ece_by_hand(probabilities, labels)
    assert honest == pytest.approx(result["ece"], abs=1e-3)
    # read at temperature 1, as the net came out of training: several times further from the truth
    logits = np.log(np.clip(probabilities, 1e-45, None)) * ckpt["temperature"]  # the logits, less a constant
    at_1 = np.exp(logits - logits.max(axis=1, keepdims=True))
    unsure = ece_by_hand(at_1 / at_1.sum(axis=1, keepdims=True), labels)
    assert honest < 0.02 and unsure > 2 * honest + 0.02, (honest, unsure)


def test_the_temperature_is_fitted_on_validation_not_on_the_test_set(data_dir, tmp_path):
    """train.py fits the temperature on validation, never on the test set. Here the test set's labels are
    shuffled: independent of the images, they are best matched by probabilities all alike, so the temperature
    that fits them is the largest the fit allows (20), far from validation's. The checkpoint must hold the
    temperature fitted on validation's images by the net it saved, fitted again here."""
    from lab import settings
    from lab.calibration import fit_temperature
    from lab.data import load_data, read_idx
    from lab.metrics import evaluate
    from net import build_model
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        try:
            os.link(data_dir / "MNIST" / "raw" / name, raw / name)  # read only, by train.py as by the others
        except OSError:  # a filesystem without hard links
            shutil.copyfile(data_dir / "MNIST" / "raw" / name, raw / name)
    labels = read_idx(data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + len(labels).to_bytes(4, "big")
                                                 + shuffled.numpy().tobytes())  # MNIST's idx format
    flags = ["--recipe", "ours", "--epochs", 1, "--limit", 1024, "--batch-size", 64, "--val-size", 1000,
             "--test-limit", 1000, "--precision", "fp32", "--seed", 1, "--data-dir", tmp_path / "data"]
    proc = run_py("train.py", *flags, "--logdir", tmp_path / "boardlog", "--checkpoint", tmp_path / "net.pth",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(tmp_path / "net.pth", weights_only=True)
    net = build_model(ckpt["model"], **ckpt.get("model_options", {}))
    net.load_state_dict(ckpt["state_dict"])  # the net as saved, at temperature 1
    data = load_data(settings.parse(list(map(str, flags))), torch.device("cpu"))  # the splits train.py read
    on_val, on_test = (fit_temperature(evaluate(net, *data[split])["probabilities"], data[split][1])
                       for split in ("val", "test"))
    assert on_test > 10 and on_val < 5, (on_val, on_test)  # the two sets tell a leak apart
    # the same net and images in fp32: the fit again within its grid's rounding; the test set's would be 4x off
    assert ckpt["temperature"] == pytest.approx(on_val, rel=0.05), (ckpt["temperature"], on_val, on_test)
