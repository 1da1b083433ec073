"""inside/explain.py on real MNIST with a really trained net: are the maps about the net, and do the attacks work?

- deletion: the ink pixels a map ranks highest matter more to the net than ink pixels picked at random;
- randomisation (Adebayo et al., "Sanity checks for saliency maps"): the same net with random weights
  gives different maps, so the maps show what the net learnt, not only where the ink is;
- the attacks: accuracy falls as ε grows, PGD is at least as strong as FGSM, targeted PGD reaches its
  target within the page's largest ε;
- the scripts: test.py --attack/--report/--json, predict.py --explain, draw.py's bounded explainers.
The numbers are printed (pytest -s) and quoted in docs/explain.md.
"""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_py

N = 100  # test digits for the maps' checks
ATTACKED = 50  # of them, attacked (an attack is 20 passes through the net and back, for every ε)
# inside/explain.py silences this note of Captum's; pytest shows every warning again, whatever filters a module set
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for this module's small batches: a second only waits for its share of the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net(trained):
    from lab.checkpoint import load_checkpoint
    return load_checkpoint(trained["checkpoint"])


@pytest.fixture(scope="module")
def explainer(net):
    from inside.explain import Explainer
    return Explainer(*net)


@pytest.fixture(scope="module")
def digits(data_dir):
    """N test digits (a fixed random choice) as pixels 0..1 [N, 28, 28], with their labels."""
    from lab.data import load_split
    images, labels = load_split(False, data_dir)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))[:N]
    return images[pick].float() / 255, labels[pick]


@pytest.fixture(scope="module")
def maps(explainer, digits):
    """The digit the trained net reads in each, and its Integrated Gradients map for that digit."""
    pixels, _ = digits
    read = explainer.logits(pixels).argmax(1)
    return read, explainer.integrated_gradients(pixels, read)


def spearman(a, b):
    """Spearman's rank correlation of two sets of values (no ties among attributions in practice)."""
    ra, rb = (v.flatten().argsort().argsort().double() for v in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def score(explainer, pixels, read):
    """The probability the net gives the digit it read in the unchanged image."""
    return explainer.logits(pixels).softmax(1)[torch.arange(len(read)), read]


def test_integrated_gradients_add_up_to_the_score(explainer, digits, maps):
    """The page says so: the shares add up to the score's rise from a blank image (completeness)."""
    pixels, _ = digits
    read, ig = maps
    each = torch.arange(N)
    rise = explainer.logits(pixels)[each, read] - explainer.logits(torch.zeros(N, 28, 28))[each, read]
    assert torch.allclose(ig.sum((1, 2)), rise, rtol=0.03, atol=0.03)
    assert (ig[pixels == 0] == 0).all()  # from a blank image, the background has no share: it did not change


def test_deletion_removing_the_top_pixels_hurts_most(explainer, digits, maps):
    """Remove (set to black) 10% of each digit's ink pixels: those the map ranks highest, or at random."""
    pixels, _ = digits
    read, ig = maps
    by_map, lowest, at_random = pixels.clone(), pixels.clone(), pixels.clone()
    g = torch.Generator().manual_seed(0)
    for i in range(N):
        ink = (pixels[i] > 0).flatten().nonzero().flatten()
        k = max(1, round(0.1 * len(ink)))
        order = ig[i].flatten()[ink].argsort(descending=True)
        by_map[i].view(-1)[ink[order[:k]]] = 0
        lowest[i].view(-1)[ink[order[-k:]]] = 0
        at_random[i].view(-1)[ink[torch.randperm(len(ink), generator=g)[:k]]] = 0
    before = score(explainer, pixels, read)
    drop = {name: float((before - score(explainer, x, read)).mean())
            for name, x in (("map", by_map), ("random", at_random), ("lowest", lowest))}
    still = int((explainer.logits(by_map).argmax(1) == read).sum())
    print(f"deletion of 10% of the ink over {N} test digits: the read digit's probability drops by "
          f"{drop['map']:.3f} (top of the map), {drop['random']:.3f} (random), {drop['lowest']:+.3f} "
          f"(bottom of the map); {still}/{N} still read the same after the top is removed")
    assert drop["map"] > 0.05 and drop["map"] > 4 * max(drop["random"], 0.001), drop
    assert drop["lowest"] < drop["random"], drop  # removing the blue pixels helps the digit: the sign means something


def test_randomised_weights_give_other_maps(net, explainer, digits, maps):
    """Maps of the trained net and of the same net with random weights, ranked pixel by pixel."""
    from inside.explain import Explainer
    from net import build_model
    model, ckpt = net
    pixels, _ = digits
    read, ig = maps
    torch.manual_seed(0)
    untrained = Explainer(build_model(ckpt["model"], **ckpt.get("model_options", {})).eval(), ckpt)
    ig_random = untrained.integrated_gradients(pixels, read)
    cam, cam_random = explainer.grad_cam(pixels, read), untrained.grad_cam(pixels, read)
    ink = pixels > 0  # IG from a blank image is 0 off the ink, for any weights: rank the ink pixels only
    ig_rho = [spearman(ig[i][ink[i]], ig_random[i][ink[i]]) for i in range(N)]
    cam_rho = [spearman(cam[i], cam_random[i]) for i in range(N)]
    # a control: gradient x input, another map of the same trained net, agrees with it: a low
    # correlation above means the weights matter, not that the measure cannot see agreement
    from captum.attr import InputXGradient  # here: only this test compares with a second method
    gxi = InputXGradient(explainer.net).attribute(pixels.unsqueeze(1).requires_grad_(), target=read).detach()[:, 0]
    control = [spearman(ig[i][ink[i]], gxi[i][ink[i]]) for i in range(N)]
    med = {name: float(np.median(v)) for name, v in (("ig", ig_rho), ("cam", cam_rho), ("control", control))}
    print(f"randomisation over {N} test digits, median Spearman rank correlation: trained vs random weights "
          f"{med['ig']:.2f} (Integrated Gradients, ink pixels), {med['cam']:.2f} (Grad-CAM); "
          f"control, IG vs gradient x input of the trained net: {med['control']:.2f}")
    assert med["ig"] < 0.3 and med["cam"] < 0.5 and med["control"] > 0.5, med


def test_attacks_lower_accuracy_as_eps_grows(explainer, digits):
    from inside.explain import robust_accuracy
    pixels, labels = (t[:ATTACKED] for t in digits)
    eps = (0.0, 0.15, 0.3)
    acc = robust_accuracy(explainer, pixels, labels, eps)
    print(f"accuracy under attack, {ATTACKED} test digits: " + ", ".join(
        f"ε {e:g}: FGSM {100 * f:.1f}%, PGD {100 * p:.1f}%" for e, f, p in zip(eps, acc["fgsm"], acc["pgd"])))
    fgsm, pgd = acc["fgsm"], acc["pgd"]
    assert fgsm[0] == pgd[0] > 0.9  # ε = 0: the plain accuracy
    assert all(a > b for a, b in zip(fgsm, fgsm[1:])) and all(a >= b for a, b in zip(pgd, pgd[1:]))
    assert all(p <= f for p, f in zip(pgd, fgsm)) and pgd[-1] < 0.1


def test_targeted_pgd_reaches_its_target_within_the_pages_largest_eps(explainer, digits):
    page = (ROOT / "draw" / "index.html").read_text(encoding="utf-8")
    largest = float(re.search(r'<input id="eps" type="range" min="0" max="([\d.]+)"', page).group(1))
    pixels, labels = (t[:ATTACKED] for t in digits)
    shift = torch.randint(1, 10, (ATTACKED,), generator=torch.Generator().manual_seed(1))
    target = (labels + shift) % 10  # never the label
    changed = explainer.attack(pixels, largest, labels, target)
    reached = int((explainer.logits(changed).argmax(1) == target).sum())
    print(f"targeted PGD at ε = {largest:g}: {reached}/{ATTACKED} test digits read as their target")
    assert (changed - pixels.unsqueeze(1)).abs().max() <= largest + 1e-6 and 0 <= changed.min() and changed.max() <= 1
    assert reached >= 0.8 * ATTACKED


@pytest.mark.quick
def test_a_net_without_conv_layers_has_input_maps_and_no_grad_cam(digits):
    from inside.explain import Explainer
    from net import build_model
    torch.manual_seed(0)
    e = Explainer(build_model("mlp").eval(), {})
    pixels, labels = digits
    assert e.grad_cam(pixels[:2], labels[:2]) is None
    assert e.integrated_gradients(pixels[:2], labels[:2]).shape == (2, 28, 28)


@pytest.mark.quick
def test_explainers_are_lent_one_request_at_a_time(net):
    from draw import Explainers, Refused
    pool = Explainers(*net, 1)
    with pool.lend(wait=1) as first:
        with pytest.raises(Refused, match=r"^busy: explanations and attacks run 1 at a time here, and this one "
                                       r"waited 0.05 s for its turn; try again in a moment$") as e:
            with pool.lend(wait=0.05):
                pass
        assert "\n" not in str(e.value) and e.value.status == 503
    with pool.lend(wait=0.05) as again:  # given back: the next request gets it
        assert again is first


# ---------------------------------------------------------------- the scripts

def test_test_py_attack_report_and_json(trained, data_dir, tmp_path):
    proc = run_py("test.py", "--checkpoint", trained["checkpoint"], "--data-dir", data_dir, "--attack", 20,
                  "--json", tmp_path / "r.json", "--report", tmp_path / "report", cwd=tmp_path,
                  env={"OMP_NUM_THREADS": "1"})  # as above: 20 images at a time need no second thread
    assert proc.returncode == 0, proc.stderr
    assert "Attacking the first 20 test images" in proc.stdout
    rows = re.findall(r"^\| ([\d.]+) +\| +([\d.]+)% \| +([\d.]+)% \|$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3"], proc.stdout
    attack = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["attack"]
    assert attack["images"] == 20 and attack["pgd_steps"] == 20 and len(attack["fgsm"]) == len(attack["pgd"]) == 7
    assert [f"{100 * a:.1f}" for a in attack["fgsm"]] == [r[1] for r in rows]
    with Image.open(tmp_path / "report" / "explained.png") as im:
        assert im.width > 600 and im.height > 100  # the most confident mistakes, 4 tiles each
    assert "explained.png" in proc.stdout


def test_predict_py_explain(trained, data_dir, tmp_path):
    from lab.data import load_split
    images, _ = load_split(False, data_dir)
    for i in range(3):
        Image.fromarray(255 - images[i].numpy()).resize((140, 140)).save(tmp_path / f"d{i}.png")
    proc = run_py("predict.py", *(tmp_path / f"d{i}.png" for i in range(3)), "--checkpoint", trained["checkpoint"],
                  "--explain", tmp_path / "why.png", "--topk", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"Wrote {tmp_path / 'why.png'}" in proc.stdout
    with Image.open(tmp_path / "why.png") as im:
        picture = np.asarray(im.convert("RGB")).astype(int)
    red = (picture[..., 0] > 150) & (picture[..., 1] < 90) & (picture[..., 2] < 90)
    blue = (picture[..., 2] > 150) & (picture[..., 0] < 90)
    assert red.sum() > 100 and blue.sum() > 10  # maps were drawn, in both colours
