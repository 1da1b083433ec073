"""Ensembles (lab/ensemble.py): several checkpoints read as one net, with the mean of their probabilities,
in test.py, predict.py and draw.py; and the one-line errors of a member that cannot be one."""
import json

import pytest
import torch
from PIL import Image

from conftest import run_each, run_py


@pytest.fixture(scope="module")
def members(trained, tmp_path_factory):
    """Three checkpoints that read differently: the session's trained net, and two copies of it whose
    weights are moved at random (so each makes mistakes of its own, and the mean differs from each)."""
    from lab.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
    folder = tmp_path_factory.mktemp("members")
    model, ckpt = load_checkpoint(trained["checkpoint"])
    paths = [trained["checkpoint"]]
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.15 * p.std() * torch.randn_like(p))  # ~15% noise: a few points of accuracy lost
        paths.append(folder / f"noisy{seed}.pth")
        save_checkpoint(make_checkpoint(model, "cnn", {}, ckpt["settings"],
                                        {"epoch": ckpt["epoch"], "val_acc": ckpt["val_acc"]}), paths[-1])
        model, _ = load_checkpoint(trained["checkpoint"])
    return paths


def mean_probabilities(paths, x):
    """By hand: each net's softmax, averaged."""
    from lab.checkpoint import load_checkpoint
    with torch.no_grad():
        return torch.stack([load_checkpoint(p)[0](x).softmax(1) for p in paths]).mean(0)


@pytest.mark.quick
def test_the_ensemble_reads_with_the_mean_of_its_members_probabilities(members):
    from lab import ensemble
    model, ckpt = ensemble.load(members)
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x).softmax(1), mean_probabilities(members, x), atol=1e-6)
    assert ckpt["model"] == "ensemble of 3 (cnn)" and [m["path"] for m in ckpt["members"]] == list(map(str, members))
    assert all("state_dict" not in m for m in ckpt["members"]) and ckpt["normalization"]["mean"] == 0.1307
    one, one_ckpt = ensemble.load(members[0])  # one path: the checkpoint itself, as before
    assert "members" not in one_ckpt and ensemble.members(one) == [one]


def test_test_py_gives_the_ensembles_accuracy_beside_each_members(members, data_dir, tmp_path):
    proc = run_py("test.py", "--checkpoint", *members, "--data-dir", data_dir, "--precision", "fp32",
                  "--json", tmp_path / "e.json", "--report", tmp_path / "rep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    from lab.data import load_split, normalize
    images, labels = load_split(False, data_dir)
    x = normalize(images)
    from lab.checkpoint import load_checkpoint
    from lab.metrics import evaluate
    # by hand: each net's softmax, read alone, and their mean. In batches (10,000 images at once take 3 times as
    # long) and in channels_last, as test.py reads (the other layout took twice as long on an AVX2-only CPU)
    probabilities = torch.stack([evaluate(load_checkpoint(p)[0].to(memory_format=torch.channels_last), x, labels)
                                 ["probabilities"] for p in members])
    alone = [int((p.argmax(1) == labels).sum()) for p in probabilities]
    together = int((probabilities.mean(0).argmax(1) == labels).sum())
    assert [m["correct"] for m in result["members"]] == alone  # each member, as test.py reads it alone
    assert result["correct"] == together and result["checkpoint"] == list(map(str, members))
    mean = probabilities.mean(0).argmax(1)
    assert all((mean != p.argmax(1)).any() for p in probabilities)  # the mean's reading is none of the members'
    assert f"Accuracy: {100 * together / 10000:.2f}% ({together}/10000)" in proc.stdout
    for path, correct in zip(members, alone):  # each member's row, with its own accuracy
        assert f"| {path} " in proc.stdout and f"{100 * correct / 10000:.2f}%" in proc.stdout
    assert sum(map(sum, result["confusion_matrix"])) == 10000
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"confusion.png", "misclassified.png", "predictions.png",
                                                               "reliability.png", "explained.png"}


@pytest.mark.quick
def test_predict_py_reads_with_an_ensemble(members, tmp_path):
    digit = Image.new("L", (56, 56), 255)  # a 1, dark on white
    digit.paste(0, (25, 8, 31, 48))
    digit.save(tmp_path / "one.png")
    proc = run_py("predict.py", tmp_path / "one.png", "--checkpoint", *members, "--topk", 10,
                  "--json", tmp_path / "p.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    from reading.images import load_image, net_input, preprocess
    x = net_input([preprocess(load_image(tmp_path / "one.png"))], {})
    expected = mean_probabilities(members, x)[0]
    got = {t["digit"]: t["probability"] for t in result["predictions"][0]["topk"]}
    assert got == pytest.approx({d: float(p) for d, p in enumerate(expected)}, abs=1e-5)
    assert result["checkpoint"] == list(map(str, members)) and result["model"] == "ensemble of 3 (cnn)"


@pytest.mark.quick
def test_a_member_that_cannot_be_one_is_a_one_line_error(members, tmp_path):
    from lab.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
    model, ckpt = load_checkpoint(members[0])
    other = make_checkpoint(model, "cnn", {}, ckpt["settings"])
    other["normalization"] = {"mean": 0.5, "std": 0.5}  # trained on other inputs
    save_checkpoint(other, tmp_path / "other-inputs.pth")
    (tmp_path / "broken.pth").write_bytes(members[0].read_bytes()[:30_000])
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pth")
    cases = {"missing.pth": "no checkpoint at", "broken.pth": "is not a readable checkpoint",
             "foreign.pth": "is not a checkpoint of this lab", "other-inputs.pth": "was trained on other inputs"}
    results = run_each("test.py", [["--checkpoint", members[0], tmp_path / name, members[1]] for name in cases],
                       cwd=tmp_path)
    results.append(run_each("predict.py", [["x.png", "--checkpoint", members[0], members[0]]], cwd=tmp_path)[0])
    for (name, words), (status, stderr) in zip([*cases.items(), (str(members[0]), "is given twice")], results):
        lines = stderr.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert name in lines[0] and words in lines[0], lines[0]


@pytest.mark.quick
def test_draw_py_reads_with_an_ensemble_and_shows_the_first_nets_layers(members):
    import io

    import draw
    from reading.images import load_image, net_input, preprocess
    net = draw.ServedNet(members[:2])
    digit = Image.new("L", (120, 120), 255)
    digit.paste(0, (55, 15, 66, 105))  # a 1
    png = io.BytesIO()
    digit.save(png, "PNG")
    answer = net.predict(png.getvalue())
    x = net_input([preprocess(load_image(png.getvalue()))], {})
    assert answer["probabilities"] == pytest.approx(mean_probabilities(members[:2], x)[0].tolist(), abs=1e-5)
    info = net.info
    assert info["members"] == 2 and info["checkpoint"] == f"{members[0]} + {members[1]}"
    assert info["parameters"] == 2 * 130_890
    assert [m["shape"] for m in info["feature_maps"]] == [[32, 14, 14], [64, 7, 7], [64, 3, 3]]
    assert [len(m) for m in answer["feature_maps"]] == [32, 64, 64]  # one net's maps, not every member's


def test_tta_reads_each_image_and_its_four_one_pixel_shifts(members, data_dir, tmp_path):
    from lab import ensemble
    from lab.checkpoint import load_checkpoint
    model, _ = load_checkpoint(members[0])
    background = -0.1307 / 0.3081
    x = torch.full((3, 1, 28, 28), background)
    x[:, :, 8:20, 12:15] = 2.0  # a bar, away from the edges
    by_hand = []
    for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = torch.roll(x, (dy, dx), (2, 3))  # the bar moves; only blank pixels wrap around
        with torch.no_grad():
            by_hand.append(model(moved).softmax(1))
    with torch.no_grad():
        tta = ensemble.Shifted(model, background)(x).softmax(1)
    assert torch.allclose(tta, torch.stack(by_hand).mean(0), atol=1e-6)
    proc = run_py("test.py", "--checkpoint", members[0], "--tta", "--data-dir", data_dir, "--json", tmp_path / "t.json",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    plain = torch.load(members[0], weights_only=True)["test_acc"]  # the net's own, as train.py measured it
    assert result["tta"] and result["accuracy_without_tta"] == pytest.approx(plain, abs=6e-5)
    assert f"without it {100 * plain:.2f}%" in proc.stdout
    assert f"Accuracy: {100 * result['accuracy']:.2f}%" in proc.stdout
