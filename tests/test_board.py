"""TensorBoard's tabs (board.py): read back from the event files, then from a real TensorBoard server.

Both use the session's real training run (2 epochs on 12,000 images, tests/conftest.py).
"""
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image

from conftest import ROOT

EVERYTHING = {"images": 0, "histograms": 0, "tensors": 0, "scalars": 0}  # size guidance: keep every event


def events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir), size_guidance=EVERYTHING)
    acc.Reload()
    return acc


def text(acc, tag):
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(f"{tag}/text_summary")]


def markdown_rows(md, first_cell):
    """The cells of the markdown table rows whose first cell matches."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if re.match(rf"\| {first_cell} +\|", line)]


@pytest.mark.quick
def test_every_tab_is_written_at_the_right_steps(trained):
    acc = events(trained["run_dir"])
    ckpt = torch.load(trained["checkpoint"], weights_only=True)

    # Images: the validation pictures every epoch, the test pictures of the best checkpoint at the end
    for tag, steps in [("val/confusion", [1, 2]), ("val/mistakes", [1, 2]), ("test/confusion", [2]),
                       ("test/mistakes", [2]), ("train/samples", [0])]:
        pictures = acc.Images(tag)
        assert [e.step for e in pictures] == steps, tag
        with Image.open(io.BytesIO(pictures[-1].encoded_image_string)) as im:
            assert im.width > 300 and im.height > 100
            assert len(im.getcolors(im.width * im.height)) > 10  # drawn, not blank

    # Histograms: every weight and its gradient, every epoch
    from net import Net
    names = [name for name, _ in Net().named_parameters()]
    for kind in ("weights", "grads"):
        for name in names:
            h = acc.Histograms(f"{kind}/{name}")
            assert [e.step for e in h] == [1, 2]
            assert h[-1].histogram_value.num == Net().get_parameter(name).numel()

    # PR curves: one per digit at the end
    assert sorted(acc.PluginTagToContent("pr_curves")) == [f"pr/{d}" for d in range(10)]
    assert all([e.step for e in acc.Tensors(f"pr/{d}")] == [2] for d in range(10))

    # Text: the command at the start, the test report at the end, matching the checkpoint
    [(step, command)] = text(acc, "command")
    assert step == 0 and "train.py" in command and "--limit 12000" in command and "--seed 3" in command
    [(step, report)] = text(acc, "test report")
    assert step == 2 and f"{100 * ckpt['test_acc']:.2f}%" in report and f"epoch {ckpt['epoch']}," in report
    matrix = torch.tensor([[int(n) for n in row[1:]] for row in markdown_rows(report, r"\*\*\d\*\*")])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert matrix.trace() == round(ckpt["test_acc"] * 10000)
    [per_digit] = markdown_rows(report, "accuracy")
    assert [float(c.rstrip("%")) for c in per_digit[1:]] == pytest.approx(
        [100 * matrix[d, d].item() / matrix[d].sum().item() for d in range(10)], abs=0.051)


@pytest.mark.quick
def test_projector_holds_2000_test_digits_with_labels_and_pictures(trained):
    from lab.data import load_split
    run = trained["run_dir"]
    config = (run / "projector_config.pbtxt").read_text(encoding="utf-8")
    assert "test_digits" in config and "sprite.png" in config
    [folder] = [p.parent for p in run.glob("*/test_digits/tensors.tsv")]
    rows = (folder / "tensors.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2000 and all(len(r.split("\t")) == 128 for r in rows[:50])  # cnn's dense layer
    _, labels = load_split(False, trained["data_dir"])
    assert [int(x) for x in (folder / "metadata.tsv").read_text(encoding="utf-8").split()] == labels[:2000].tolist()
    with Image.open(folder / "sprite.png") as sprite:
        assert sprite.size == (45 * 28, 45 * 28)  # a square of 28x28 thumbnails


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


TABS = ("scalars", "images", "histograms", "distributions", "pr_curves", "projector", "text", "graphs", "hparams")


def test_real_tensorboard_serves_every_tab(trained, tmp_path):
    """The real server, asked through its HTTP data API which runs and tags each plugin has."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(trained["logdir"]),
                             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        # Poll until the server answers, has read the run and found every plugin's data (the projector
        # looks for its config in the background). Bounded: a safety net, not a guess of how long it takes.
        deadline, listing, tags = time.monotonic() + 180, {}, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                listing = get_json(f"{base}/data/plugins_listing")
                tags = get_json(f"{base}/data/plugin/text/tags")
                if all(listing[p]["enabled"] for p in TABS) and "test report/text_summary" in tags.get("r1", []):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.25)
        assert proc.poll() is None, proc.stderr.read()
        assert {p: listing.get(p, {}).get("enabled") for p in TABS} == dict.fromkeys(TABS, True)
        assert "accuracy/val" in get_json(f"{base}/data/plugin/scalars/tags")["r1"]
        assert {"val/confusion", "val/mistakes", "test/confusion", "test/mistakes"} <= \
            set(get_json(f"{base}/data/plugin/images/tags")["r1"])
        assert "grads/features.0.weight" in get_json(f"{base}/data/plugin/histograms/tags")["r1"]
        assert {f"pr/{d}" for d in range(10)} <= set(get_json(f"{base}/data/plugin/pr_curves/tags")["r1"])
        assert {"command/text_summary", "test report/text_summary"} <= set(tags["r1"])
        assert "r1" in get_json(f"{base}/data/plugin/projector/runs")
        info = get_json(f"{base}/data/plugin/projector/info?run=r1")
        assert [e["tensorName"] for e in info["embeddings"]] == ["test_digits:00002"]  # tag:step
        assert info["embeddings"][0]["tensorShape"] == [2000, 128]

        if os.environ.get("SAVE_SCREENSHOTS"):  # for README: SAVE_SCREENSHOTS=1 python -m pytest -k real_tensorboard
            screenshots(base, ROOT / "docs")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def screenshots(base, folder):
    """The Images and Projector tabs in headless Chromium, as small PNGs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,860",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        for tab, wait_s in (("images", 8), ("projector", 25)):
            driver.get(f"{base}/#{tab}")
            time.sleep(wait_s)  # only for the picture: TensorBoard draws asynchronously; nothing is asserted
            png = folder / f"tensorboard-{tab}.png"
            driver.save_screenshot(str(png))
            with Image.open(png) as im:
                im.convert("RGB").quantize(64).save(png, optimize=True)
    finally:
        driver.quit()
