"""Temperature scaling and the calibration error (lab/calibration.py), and the temperature a checkpoint keeps."""
import json

import pytest
import torch

from conftest import run_py


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
    assert after["ece"] < 0.02 < 0.1 < before["ece"]  # too unsure by ~15 points, then honest
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
    assert result["confidence"] == pytest.approx(0.75) and result["accuracy"] == 0.75
    assert sum(b[2] for b in result["bins"]) == 4 and len(result["bins"]) == 15


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
    from lab.calibration import calibration_error, rescale
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
    # made again here: the net as loaded reads at its temperature, and test.py's figure is its ECE
    model, _ = load_checkpoint(trained["checkpoint"])
    images, labels = load_split(False, data_dir)
    probabilities = evaluate(model, normalize(images), labels)["probabilities"]
    honest = calibration_error(probabilities, labels)
    assert honest["ece"] == pytest.approx(result["ece"], abs=1e-3)
    # read at temperature 1, as the net came out of training: several times further from the truth
    unsure = calibration_error(rescale(probabilities, 1 / ckpt["temperature"]), labels)
    assert honest["ece"] < 0.02 and unsure["ece"] > 2 * honest["ece"] + 0.02, (honest["ece"], unsure["ece"])
