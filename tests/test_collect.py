"""Your own digits as a test set: test.py --images on a labelled folder, draw.py --collect making one
(a real server on a free port, and its page in the real headless Chromium), POST /read, and what the
collect mode refuses. MNIST test digits stand in for the user's, as photos and as drawings.
"""
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_draw import ANSWERED, chromium, drawing, raw, request, start_server, stop, strokes, wait_for
from test_pages import untrained  # noqa: F401  (a fixture: an untrained checkpoint, no training needed)
from test_predict import user_photo

from conftest import run_each, run_py
from lab.files import write_new
from reading.sheets import make_sheet


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    from lab.data import load_split
    images, labels = load_split(False, data_dir)
    return images.numpy(), labels.numpy()


def first_of(labels, digit, k):
    return int(np.nonzero(labels == digit)[0][k])


def png(image):
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


# ---------------------------------------------------------------- test.py --images

@pytest.fixture(scope="module")
def labelled(mnist_test, tmp_path_factory):
    """A folder as a student makes it: 3 photos of each digit (and a fourth 5 in a sub-folder, which
    ImageFolder counts too), a file that is no image, a truncated one, and a folder that is no label."""
    images, labels = mnist_test
    folder = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(5)
    for d in range(10):
        (folder / str(d)).mkdir()
        for k in range(3):
            user_photo(images[first_of(labels, d, k)], rng).save(folder / str(d) / f"p{k}.{'png' if k else 'jpg'}")
    (folder / "5" / "more").mkdir()
    user_photo(images[first_of(labels, 5, 3)], rng).save(folder / "5" / "more" / "p3.png")
    (folder / "7" / "notes.png").write_text("not a picture\n", encoding="utf-8")
    whole = (folder / "3" / "p1.png").read_bytes()
    (folder / "3" / "cut.png").write_bytes(whole[:len(whole) // 2])
    (folder / "misc").mkdir()
    user_photo(images[0], rng).save(folder / "misc" / "x.png")
    return folder


def test_images_gives_the_counts_beside_mnist(trained, labelled, data_dir, tmp_path):
    proc = run_py("test.py", "--images", labelled, "--checkpoint", trained["checkpoint"], "--data-dir", data_dir,
                  "--json", tmp_path / "mine.json", "--report", tmp_path / "report", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # every readable file counted, but two could not be read
    assert sorted(proc.stderr.splitlines()) == [
        f"error: {labelled / '3' / 'cut.png'}: cannot decode the image (truncated or corrupt: image file is truncated)",
        f"error: {labelled / '7' / 'notes.png'}: not an image Pillow can read"]
    out = proc.stdout
    assert out.startswith(f"(ignoring the folders misc in {labelled}: only 0 to 9 are labels)\n")
    counts = "0: 3, 1: 3, 2: 3, 3: 3, 4: 3, 5: 4, 6: 3, 7: 3, 8: 3, 9: 3"
    assert f"Images: 31 in {labelled} ({counts}); 2 could not be read" in out
    result = json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))
    assert result["total"] == 31 and [sum(row) for row in result["confusion_matrix"]] == [3] * 5 + [4] + [3] * 4
    assert result["correct"] == sum(result["confusion_matrix"][d][d] for d in range(10)) >= 28
    assert len(result["files"]) == 31 and len(result["failed"]) == 2
    mine, mnist = 100 * result["accuracy"], 100 * result["mnist_accuracy"]
    assert re.search(rf"^Accuracy: {mine:.2f}% \({result['correct']}/31\) on your images, {mnist:.2f}% \(\d+/10000\) "
                     rf"on MNIST's test set: {abs(mnist - mine):.2f} points (lower|higher)$", out, re.M)
    assert mnist == pytest.approx(100 * trained_test_acc(trained), abs=0.3)  # the checkpoint's own figure
    assert "Confusion matrix (rows: true digit" in out
    for name in ("confusion.png", "misclassified.png"):
        with Image.open(tmp_path / "report" / name) as im:
            assert im.format == "PNG" and im.width >= 300


def trained_test_acc(trained):
    import torch
    return torch.load(trained["checkpoint"], weights_only=True)["test_acc"]


@pytest.mark.quick
def test_images_without_labelled_images_is_one_line(untrained, tmp_path):
    (tmp_path / "empty" / "3").mkdir(parents=True)
    (tmp_path / "empty" / "misc").mkdir()
    (tmp_path / "bad" / "4").mkdir(parents=True)
    (tmp_path / "bad" / "4" / "a.png").write_text("no picture\n", encoding="utf-8")
    cases = [[tmp_path / "none"], [tmp_path / "empty"], [tmp_path / "bad"], [tmp_path / "bad", "--attack"],
             [tmp_path / "bad", "--samples", 3]]
    results = run_each("test.py", [["--images", *c, "--checkpoint", untrained] for c in cases], cwd=tmp_path)
    starts = [f"error: --images: no folder {tmp_path / 'none'}",
              f"error: --images: no labelled image could be read in {tmp_path / 'empty'}",
              "error: --images: no labelled image could be read", "error: --attack and --samples",
             "error: --attack and --samples"]
    for (status, err), start in zip(results, starts):
        assert status == 2 and err.splitlines()[-1].startswith(start) and "Traceback" not in err, err
    assert results[2][1].splitlines()[0] == f"error: {tmp_path / 'bad' / '4' / 'a.png'}: not an image Pillow can read"


# ---------------------------------------------------------------- draw.py --collect and POST /read

@pytest.fixture(scope="module")
def collecting(untrained, tmp_path_factory):
    """draw.py --collect on an untrained net: what is saved and refused does not depend on the reading."""
    work = tmp_path_factory.mktemp("collecting")
    proc, url, lines = start_server(untrained, "--collect", work / "mine", cwd=work)
    host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()
    yield {"host": host, "port": int(port), "lines": lines, "folder": work / "mine", "work": work}
    stop(proc)


@pytest.fixture(scope="module")
def pngs(mnist_test):
    rng = np.random.default_rng(0)
    return [drawing(d, rng) for d in mnist_test[0][:4]]


def post(server, path, body):
    status, _, answer = request(server, "POST", path, body, {"Content-Type": "image/png"})
    return status, answer


@pytest.mark.quick
def test_collect_saves_the_page_png_only_under_its_folder(collecting, pngs):
    assert "Collect mode: the page saves your drawings into " in "".join(collecting["lines"])
    before = files_under(collecting["work"])
    status, a = post(collecting, "/collect?digit=7", pngs[0])
    assert status == 200 and re.fullmatch(r"7/drawn-\d{8}-\d{6}\.png", a["saved"]), a
    status, b = post(collecting, "/collect?digit=7", pngs[0])  # the same drawing again: a file of its own
    assert status == 200 and b["saved"] != a["saved"] and b["counts"]["7"] == 2
    assert sum(b["counts"].values()) == 2
    new = sorted(set(files_under(collecting["work"])) - set(before))
    assert new == sorted(f"mine/{name}" for name in (a["saved"], b["saved"]))  # nothing anywhere else
    assert (collecting["folder"] / a["saved"]).read_bytes() == pngs[0]  # the very PNG the page sent
    info = request(collecting, "GET", "/info")[2]["collect"]
    assert info == {"folder": str(collecting["folder"]), "counts": b["counts"]}


@pytest.mark.quick
@pytest.mark.parametrize("query, error", [
    ("", "digit must be one of 0-9, not 'None'"), ("?digit=", "digit must be one of 0-9, not ''"),
    ("?digit=10", "digit must be one of 0-9, not '10'"), ("?digit=seven", "digit must be one of 0-9, not 'seven'"),
    ("?digit=../../x", "digit must be one of 0-9, not '../../x'"),
    ("?digit=%2Fetc", "digit must be one of 0-9, not '/etc'"),
    ("?digit=7&digit=8", "digit is given 2 times"), ("?digit=7&name=x.png", "unknown parameter 'name'"),
    ("?digit=7&folder=/tmp", "unknown parameter 'folder'")])
def test_collect_refuses_a_label_that_is_not_one_digit(collecting, pngs, query, error):
    before = files_under(collecting["work"])
    status, a = post(collecting, f"/collect{query}", pngs[1])
    assert status == 400 and list(a) == ["error"] and "\n" not in a["error"] and a["error"].startswith(error), a
    assert files_under(collecting["work"]) == before


@pytest.mark.quick
def test_collect_refuses_bodies_and_paths(collecting, pngs):
    before = files_under(collecting["work"])
    jpeg, blank = io.BytesIO(), io.BytesIO()
    Image.open(io.BytesIO(pngs[1])).convert("RGB").save(jpeg, "JPEG")
    Image.new("RGB", (280, 280), "white").save(blank, "PNG")
    for body, reason in ((jpeg.getvalue(), "not a PNG file"), (b"hello", "not a PNG file"),
                         (blank.getvalue(), "no digit"), (pngs[1][:len(pngs[1]) // 2], "truncated")):
        status, a = post(collecting, "/collect?digit=3", body)
        assert status == 400 and reason in a["error"] and "\n" not in a["error"], a
    status, a = raw(collecting, b"POST /collect?digit=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n"
                                + bytes(4096))
    assert status == 413 and "limit of 10 MB" in a["error"]
    for path in ("/collect/7", "/collect/../mine/7", "/../collect?digit=7", "/collect%2F7?digit=7", "/mine/7/x.png"):
        assert post(collecting, path, pngs[1]) == (404, {"error": "no such page"}), path
    assert request(collecting, "GET", "/collect?digit=3")[0] == 405
    assert files_under(collecting["work"]) == before


@pytest.mark.quick
def test_without_collect_nothing_can_be_written(untrained, pngs, tmp_path):
    proc, url, lines = start_server(untrained, cwd=tmp_path)
    try:
        host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()
        server = {"host": host, "port": int(port)}
        assert post(server, "/collect?digit=7", pngs[0]) == (404, {"error": "no such page"})
        assert request(server, "GET", "/info")[2]["collect"] is None
        assert request(server, "GET", "/collect")[0] == 404
    finally:
        stop(proc)
    assert files_under(tmp_path) == ["draw-stderr.txt"]
    (tmp_path / "file").write_text("in the way\n", encoding="utf-8")
    proc = run_py("draw.py", "--checkpoint", untrained, "--collect", tmp_path / "file" / "mine", "--port", 0,
                  "--no-browser", cwd=tmp_path)
    assert proc.returncode == 2 and "Serving" not in proc.stdout
    folder = tmp_path / "file" / "mine"
    assert proc.stderr == f"error: --collect: cannot make the folder {folder} (a file is in the way)\n"


@pytest.mark.quick
def test_write_new_never_writes_over_a_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"mine")
    assert write_new(tmp_path, "a", b"new") == tmp_path / "a-2.png"
    assert (tmp_path / "a.png").read_bytes() == b"mine"
    bodies = [bytes([k]) * 100_000 for k in range(8)]
    paths = []
    threads = [threading.Thread(target=lambda b=b: paths.append(write_new(tmp_path, "b", b))) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 8 and sorted(p.read_bytes() for p in paths) == sorted(bodies)  # each whole, none lost
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.quick
def test_read_answers_every_digit(collecting, mnist_test):
    images, labels = mnist_test
    sheet = make_sheet(images[:7], labels[:7], np.random.default_rng(4), "wide", [4, 3])
    status, a = post(collecting, "/read", png(sheet.image))
    assert status == 200, a
    assert (a["width"], a["height"]) == sheet.image.size and [len(line) for line in a["lines"]] == [4, 3]
    assert [d["line"] for d in a["digits"]] == [1, 1, 1, 1, 2, 2, 2]
    for d, truth in zip(a["digits"], [b for line in sheet.boxes for b in line]):
        cx, cy = (d["box"][0] + d["box"][2]) / 2, (d["box"][1] + d["box"][3]) / 2
        assert truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]
        assert np.shape(d["input"]) == (28, 28) and len(d["probabilities"]) == 10
        assert d["digit"] == int(np.argmax(d["probabilities"]))
    assert post(collecting, "/read", b"hello") == (400, {"error": "not an image Pillow can read"})


# ---------------------------------------------------------------- the page, in headless Chromium

@pytest.fixture(scope="module")
def page(trained, tmp_path_factory):
    """draw.py --collect on the trained net, and its page in Chromium."""
    work = tmp_path_factory.mktemp("page")
    proc, url, _ = start_server(trained["checkpoint"], "--collect", work / "drawn", cwd=work)
    try:
        with chromium(url, tmp_path_factory.mktemp("chromium")) as driver:
            yield driver, work / "drawn"
    finally:
        stop(proc)


def draw_on_pad(driver, digits):
    """Draw MNIST digits side by side on the pad, each filling its share of its width, with real pointer events."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, "clear").click()
    left, top, width, height = driver.execute_script(
        "const r = document.getElementById('pad').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]")
    actions = ActionBuilder(driver, mouse=PointerInput("mouse", "mouse"), duration=10)
    for k, digit in enumerate(digits):
        for path in strokes(digit):
            for i, (y, x) in enumerate(path):
                actions.pointer_action.move_to_location(left + (28 * k + x + 0.5) * width / (28 * len(digits)),
                                                        top + (y + 0.5) * height / 28)
                if i == 0:
                    actions.pointer_action.pointer_down()
            actions.pointer_action.pointer_up()
    actions.perform()
    wait_for(driver, ANSWERED)


def test_browser_collects_each_digit_in_turn(page, mnist_test, trained, data_dir, tmp_path):
    from selenium.webdriver.common.by import By
    driver, folder = page
    images, labels = mnist_test
    assert driver.find_element(By.ID, "collect").is_displayed()
    assert driver.find_element(By.ID, "save").get_attribute("disabled")  # nothing drawn: nothing to save
    asked = []
    for k in range(10):
        wanted = int(driver.find_element(By.ID, "wanted").text)
        asked.append(wanted)
        draw_on_pad(driver, [images[first_of(labels, wanted, 20)]])
        driver.find_element(By.ID, "save").click()
        wait_for(driver, f"document.body.dataset.collected === '{k + 1}'")
        status = driver.find_element(By.ID, "collect-status").text
        assert status.startswith(f"Saved {wanted}/drawn-") and status.endswith(f": 1 of {wanted} now."), status
    assert asked == list(range(10))  # each digit in turn, the fewest saved first
    saved = [driver.find_element(By.CSS_SELECTOR, f"#count-saved td:nth-child({d + 1})").text for d in range(10)]
    assert saved == ["1"] * 10
    files = files_under(folder)
    assert [f.split("/")[0] for f in files] == [str(d) for d in range(10)] and all(f.endswith(".png") for f in files)
    proc = run_py("test.py", "--images", folder, "--checkpoint", trained["checkpoint"], "--data-dir", data_dir,
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    right = int(re.search(r"Accuracy: [\d.]+% \((\d+)/10\) on your images", proc.stdout).group(1))
    assert right >= 8, proc.stdout  # drawn on the page as test_draw.py's drawings, read as well


def test_browser_number_mode_boxes_each_digit(page, mnist_test):
    from selenium.webdriver.common.by import By
    driver, _ = page
    images, labels = mnist_test
    driver.find_element(By.ID, "number").click()
    try:
        assert driver.execute_script("return document.getElementById('pad').width") == 840
        picks = [first_of(labels, d, 30) for d in (3, 5, 8)]
        draw_on_pad(driver, [images[i] for i in picks])
        assert driver.find_element(By.ID, "number-panel").is_displayed()
        read = driver.execute_script("return document.body.dataset.number")
        assert len(read) == 3 and sum(a == b for a, b in zip(read, "358")) >= 2, read
        assert driver.find_element(By.ID, "number-read").text == read
        assert len(driver.find_elements(By.CSS_SELECTOR, "#number-digits canvas")) == 3
        painted = driver.execute_script("""const c = document.getElementById('boxes');
            const alpha = c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((v, i) => i % 4 === 3);
            return alpha.filter(v => v > 0).length""")
        assert painted > 100  # three boxes drawn over the pad
        assert driver.find_element(By.ID, "save").get_attribute("disabled")  # a number is not one digit to save
    finally:
        driver.find_element(By.ID, "number").click()
    assert driver.execute_script("return document.getElementById('pad').width") == 280
    assert not driver.find_element(By.ID, "number-panel").is_displayed()


def test_browser_photo_of_a_number_is_read_digit_by_digit(page, mnist_test, trained, tmp_path):
    from selenium.webdriver.common.by import By

    from lab.checkpoint import load_checkpoint
    from reading.images import load_image
    from reading.pages import classifier, read
    driver, _ = page
    images, labels = mnist_test
    picks = [first_of(labels, d, 40) for d in (2, 0, 4, 7)]
    sheet = make_sheet(images[picks], labels[picks], np.random.default_rng(3), "normal", [4])
    sheet.image.save(tmp_path / "number.jpg", quality=90)
    driver.find_element(By.ID, "file").send_keys(str(tmp_path / "number.jpg"))
    wait_for(driver, "document.body.dataset.pageRead === document.body.dataset.version && " + ANSWERED)
    number = driver.execute_script("return document.body.dataset.number")
    expected = read(load_image(tmp_path / "number.jpg"), classifier(*load_checkpoint(trained["checkpoint"])))
    assert number == " ".join(expected.lines) and len(number) == 4  # what predict.py reads in the same photo
    assert sum(a == b for a, b in zip(number, "2047")) >= 3, number
    assert driver.find_element(By.ID, "number-panel").is_displayed()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#number-digits canvas")) == 4
