"""reading/pages.py and predict.py on pages of digits: sheets made from real MNIST test digits as a phone
photographs them (reading/sheets.py), read by the session's trained net, and the script's page output.

The segmentation asks the net only when it weighs a cut between touching digits, so the tests of
what it finds on a page without touching digits (one digit, broken strokes, specks, the paper's edge)
run with an untrained net, in a second or two.
"""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from test_predict import user_photo

from conftest import run_each, run_py
from reading import cutting
from reading.images import load_image, preprocess
from reading.ink import ink_map, ink_mask
from reading.pages import classifier, read
from reading.pieces import not_edges, pieces
from reading.sheets import make_sheet, make_sheets, score

TWO_STROKES = {4: [9669, 6543], 7: [7267], 5: [59]}  # MNIST test digits whose ink is two pieces, looked up once


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    from lab.data import load_split
    images, labels = load_split(False, data_dir)
    return images.numpy(), labels.numpy()


def unsure(pixels):
    """A net that reads nothing surely: read() then never cuts a digit, whatever the page."""
    return torch.full((len(pixels), 10), 0.1)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A checkpoint of an untrained cnn that reads every digit as 0 at 10%, never surely: for the scripts'
    output without a training, and pages found as `unsure` finds them (no cut is ever surer)."""
    from lab.checkpoint import make_checkpoint, save_checkpoint
    from net import build_model
    torch.manual_seed(0)
    model = build_model("cnn")
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    path = tmp_path_factory.mktemp("untrained") / "net.pth"
    save_checkpoint(make_checkpoint(model, "cnn", {}, {}, {"epoch": 0, "val_acc": 0.1}), path)
    return path


@pytest.fixture(scope="module")
def net(trained):
    from lab.checkpoint import load_checkpoint
    model, ckpt = load_checkpoint(trained["checkpoint"])
    return classifier(model, ckpt)


def sheet_of(mnist_test, indices, spacing="normal", gaps=None, seed=0):
    """One line of the MNIST test digits `indices`, photographed."""
    images, labels = mnist_test
    return make_sheet(images[indices], labels[indices], np.random.default_rng(seed), spacing, [len(indices)], gaps)


# ---------------------------------------------------------------- what is found, without a trained net

@pytest.mark.quick
def test_one_digit_is_the_whole_image_as_before(mnist_test):
    """A photo of one digit (test_predict's 200 user photos are made so) is one digit, read from the whole
    image exactly as preprocess() always read it."""
    images, _ = mnist_test
    rng = np.random.default_rng(3)
    for digit in images[:12]:
        photo = user_photo(digit, rng)
        page = read(photo, unsure)
        assert len(page.digits) == 1 and page.digits[0].crop is photo
        assert torch.equal(page.digits[0].pixels, preprocess(photo))


@pytest.mark.quick
def test_an_image_known_to_hold_one_digit_is_read_whole(mnist_test):
    """read(one_digit=True), as test.py --images and draw.py's /predict ask: the whole image is the one digit,
    read exactly as a page of one digit is, even where the page holds several pieces that are digits."""
    sheet = sheet_of(mnist_test, [3, 4], "wide")
    assert len(read(sheet.image, unsure).digits) == 2
    page = read(sheet.image, unsure, one_digit=True)
    assert len(page.digits) == 1 and page.digits[0].crop is sheet.image and page.image is sheet.image
    assert torch.equal(page.digits[0].pixels, preprocess(sheet.image))
    assert page.digits[0].box == (0, 0, sheet.image.width, sheet.image.height)


def test_broken_strokes_make_one_digit_and_specks_none(mnist_test):
    """MNIST's own two-stroke 4s, 7 and 5 stay one digit each among others; the sheet's specks of dirt and,
    on some sheets, the table along an edge, are no digits."""
    images, labels = mnist_test
    def pieces_of(i):
        return pieces(images[i] > 100)
    assert all(len(pieces_of(i)) >= 2 for ids in TWO_STROKES.values() for i in ids)  # really two strokes
    line = [3, *TWO_STROKES[4], 2, *TWO_STROKES[7], *TWO_STROKES[5]]
    sheets = [sheet_of(mnist_test, line, "wide", seed=seed) for seed in range(11)]  # pens, slants, shadows, dirt
    assert sum(s.specks for s in sheets) >= 5 and sum(s.edge is not None for s in sheets) >= 2  # they are there
    for seed, sheet in enumerate(sheets):
        page = read(sheet.image, unsure)
        assert len(page.digits) == len(line) and len(page.lines) == 1, (seed, page.lines)
        assert score(sheet, page.lines, [(d.line, d.box) for d in page.digits])[4]  # in order
        for (left, top, right, bottom), d in zip(sheet.boxes[0], page.digits):  # each box on its digit
            cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            assert left <= cx <= right and top <= cy <= bottom, (seed, d.box)


def test_lines_top_to_bottom_even_sloping(mnist_test):
    images, labels = mnist_test
    for seed in range(4):
        sheet = make_sheet(images[:32], labels[:32], np.random.default_rng(seed), "wide", [5, 3, 6, 4])
        page = read(sheet.image, unsure)
        assert [len(line) for line in page.lines] == [5, 3, 6, 4], seed
        assert score(sheet, page.lines, [(d.line, d.box) for d in page.digits])[4], seed


# ---------------------------------------------------------------- read by the trained net

def test_touching_pairs_are_cut_where_the_net_reads_both_sides(mnist_test, net, monkeypatch):
    """Digits written so close that their ink is one piece are cut in two (beside a digit apart: a page of
    one piece is cut only when wider than any digit); the 4 in two strokes is one."""
    images, labels = mnist_test

    def read_pair(seed):
        a, b = 40 + 2 * seed, 41 + 2 * seed
        sheet = sheet_of(mnist_test, [a, b, 3], "touching", gaps=[None, 0.6, 0], seed=seed)
        mask = ink_mask(ink_map(sheet.image)[0])
        found = pieces(mask)
        found = not_edges(found, mask.shape)
        assert len([p for p in found if p.ink > 50]) == 2, seed  # the pair's ink touches: one piece (and specks)
        page = read(sheet.image, net)
        return page.lines == [f"{labels[a]}{labels[b]}{labels[3]}"] and not page.notes

    right = [read_pair(seed) for seed in range(12)]
    print(f"{sum(right)}/12 touching pairs read right")
    assert sum(right) >= 5, right  # the session's small net reads 7 here; docs/predict.md has the figures on 50 sheets
    monkeypatch.setattr(cutting, "MAY_CUT", float("inf"))  # no cut at all: each pair is read as one digit
    assert not any(read_pair(seed) for seed in range(3))
    page = read(sheet_of(mnist_test, [3, TWO_STROKES[4][0], 1], "normal").image, net)
    assert page.lines == [f"{labels[3]}4{labels[1]}"]


def test_digits_that_cannot_be_cut_are_said_to_touch(mnist_test, net, monkeypatch):
    """A piece that stays wider than any single digit once cut (here: cuts turned off, three touching
    digits beside one apart) is read as one, and a note says where, with about how many it holds."""
    monkeypatch.setattr(cutting, "MAY_CUT", float("inf"))
    for seed in (17, 20, 25):
        idx = [3 * seed, 3 * seed + 1, 3 * seed + 2, 3]
        sheet = sheet_of(mnist_test, idx, "touching", gaps=[None, None, 0.6, 0], seed=seed)
        page = read(sheet.image, net)
        assert len(page.digits) == 2 and len(page.notes) == 1, (seed, page.lines)
        assert re.fullmatch(r"line 1: [2-4] digits seem to touch at x \d+-\d+, y \d+-\d+: read as one", page.notes[0])


def test_sheets_read_as_their_digits_in_order(mnist_test, net):
    """The issue's goal, measured with the session's net (2 epochs on 12,000 images, 98.5% on MNIST's test
    digits alone, about 95% on these sheets' digits, which are slanted, thinner or bolder): the thresholds
    are that net's, a few points under what it reads here. "overlapping" (digits written over each other) is
    outside the goal: only its reading order is held to it. docs/predict.md has the figures of the default
    and the best recipe's nets on 50 sheets of each spacing (python bench.py --pages)."""
    images, labels = mnist_test
    totals = {}
    for sheet in make_sheets(images, labels, 6, seed=5):
        page = read(sheet.image, net)
        counts = score(sheet, page.lines, [(d.line, d.box) for d in page.digits])
        totals[sheet.spacing] = [a + b for a, b in zip(totals.get(sheet.spacing, [0] * 5), counts)]
    print({s: f"digits {100 * r / d:.1f}%, lines {100 * lr / n:.1f}%, order {o}/6"
           for s, (d, r, n, lr, o) in totals.items()})
    assert all(o == 6 for *_, o in totals.values()), totals  # the reading order, always
    d, r, n, lr, _ = map(sum, zip(*[t for s, t in totals.items() if s != "overlapping"]))
    # The floors stand under what such a net reads by its binomial spread, so that another CPU's net (bf16 or fp32
    # arithmetic trains another net) passes: each spacing holds 72-85 digits, read at 90-100% (one deviation up to
    # 3.2 points), the touching 64 at 58-66% (6 points), the lines 53 at about 66% (6.5 points). docs/tests.md
    # (bounds) has each floor's margin; a reader that lost its grouping or its cuts falls far under them.
    assert r / d >= 0.85 and lr / n >= 0.45, totals
    for spacing in ("wide", "normal", "close"):
        assert totals[spacing][1] / totals[spacing][0] >= 0.85, totals
    assert totals["touching"][1] / totals["touching"][0] >= 0.45, totals


# ---------------------------------------------------------------- predict.py on a page

@pytest.fixture(scope="module")
def page_files(mnist_test, tmp_path_factory):
    """A sheet of 3 lines of 10 digits each written as 0 to 9 (MNIST test digits), one whose middle line
    misses a digit, and a photo of one digit."""
    images, labels = mnist_test
    folder = tmp_path_factory.mktemp("pages")
    order = [int(np.nonzero(labels == d)[0][k]) for k in range(3) for d in range(10)]
    sheet = make_sheet(images[order], labels[order], np.random.default_rng(1), "wide", [10, 10, 10])
    sheet.image.save(folder / "page.jpg", quality=90)
    short = make_sheet(images[order], labels[order], np.random.default_rng(2), "wide", [10, 9, 10])
    short.image.save(folder / "short.png")
    user_photo(images[0], np.random.default_rng(0)).save(folder / "one.png")
    return folder, sheet


@pytest.mark.quick
def test_predict_prints_each_line_then_each_digit(untrained, page_files, tmp_path):
    """The output's form, with an untrained net: what it reads is the next test's."""
    folder, sheet = page_files
    proc = run_py("predict.py", folder / "one.png", folder / "page.jpg", "--checkpoint", untrained,
                  "--json", tmp_path / "p.json", "--show", tmp_path / "seen.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    one, page = (json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["predictions"])
    # one digit: the line it always was; then the page: the numbers, a line each, the notes
    assert out[0] == (f"{folder / 'one.png'}   →  {one['prediction']}  ({100 * one['probability']:.1f}%)   top 3: "
                      + " · ".join(f"{t['digit']} {100 * t['probability']:.1f}%" for t in one["topk"]))
    assert out[1] == f"{folder / 'page.jpg'}  →  {' '.join(page['lines'])}   (30 digits on 3 lines)"
    for n in range(3):
        digits = [d for d in page["digits"] if d["line"] == n + 1]
        assert out[2 + n] == f"    line {n + 1}: {page['lines'][n]}   " + " · ".join(
            f"{d['prediction']} {100 * d['probability']:.1f}%" for d in digits)
    assert out[5] == f"Wrote {tmp_path / 'seen.png'}" and len(out) == 6
    assert [len(line) for line in page["lines"]] == [10, 10, 10]
    for d, truth in zip(page["digits"], [b for line in sheet.boxes for b in line]):
        assert len(d["probabilities"]) == 10 and d["prediction"] == int(np.argmax(d["probabilities"]))
        cx, cy = (d["box"][0] + d["box"][2]) / 2, (d["box"][1] + d["box"][3]) / 2
        assert truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]  # the box of that digit, in the photo's pixels
    with Image.open(tmp_path / "seen.png") as im:
        assert im.width >= 420 and im.height > 300


def test_predict_reads_a_page_written_as_asked(trained, page_files, tmp_path):
    folder, sheet = page_files
    proc = run_py("predict.py", folder / "page.jpg", "--checkpoint", trained["checkpoint"], "--expect", "0123456789",
                  cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no line refused: each holds its 10 digits
    first = proc.stdout.splitlines()[0]
    lines = re.fullmatch(r".*→  (\d{10}) (\d{10}) (\d{10})   \(30 digits on 3 lines\)", first)
    assert lines, first
    # Each digit as written, but for a few: MNIST's first three test digits of each kind, read at about 97.5% by
    # such a net, give no mistake 47% of the time and more than 3 in under 1% (binomial). Each one is counted.
    wrong = sum(a != b for a, b in zip("".join(lines.groups()), "0123456789" * 3))
    assert wrong <= 3, first
    # Its count, exactly, where the net misread some (about half the time); none where it read all right.
    # test_predict_counts_the_digits_read_otherwise below checks a count on every machine.
    counts = [line for line in proc.stdout.splitlines() if "the net reads as another digit" in line]
    assert counts == ([f"{wrong} digits the net reads as another digit than expected"] if wrong else []), first


@pytest.mark.quick
def test_predict_counts_the_digits_read_otherwise(untrained, page_files, tmp_path):
    """--expect's count on pages the net certainly misreads: the untrained net reads every digit as 0. page.jpg
    holds 0 to 9 three times: 27 read otherwise. short.png's lines 1 and 3 hold 0 to 9 (18 more); its line 2, of 9
    digits, is refused and not counted. A count of one page alone (27 or 18), or of the refused line too (53), or
    none, fails."""
    folder, _ = page_files
    proc = run_py("predict.py", folder / "page.jpg", folder / "short.png", "--checkpoint", untrained,
                  "--expect", "0123456789", cwd=tmp_path)
    assert proc.returncode == 1  # the refused line
    assert proc.stderr == f"{folder / 'short.png'}: line 2: 9 digits found, 10 expected: none of them saved\n"
    out = proc.stdout.splitlines()
    assert out[0].endswith("→  0000000000 0000000000 0000000000   (30 digits on 3 lines)"), out[0]
    assert out[-1] == "45 digits the net reads as another digit than expected", proc.stdout
    assert len(out) == 9, proc.stdout  # each page's first line and its 3 lines, then the count


def test_save_digits_keeps_the_lines_written_as_expected(untrained, page_files, tmp_path):
    folder, _ = page_files
    mine = tmp_path / "mine"
    (mine / "3").mkdir(parents=True)
    (mine / "3" / "short-1-4.png").write_bytes(b"already here")  # a name the new files would take
    proc = run_py("predict.py", folder / "short.png", "--checkpoint", untrained, "--save-digits", mine,
                  "--expect", "0123456789", cwd=tmp_path)
    assert proc.returncode == 1  # a line was refused
    assert proc.stderr == f"{folder / 'short.png'}: line 2: 9 digits found, 10 expected: none of them saved\n"
    # lines 1 and 3 saved; the untrained net reads each digit as 0, so all but their two 0s are read otherwise
    assert proc.stdout.splitlines()[-1] == (
        f"Saved 20 digits into {mine}/<digit>/; 18 of them the net reads as another digit than expected")
    saved = sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*.png"))
    assert len(saved) == 21 and all(len(list((mine / str(d)).glob("*.png"))) == 2 + (d == 3) for d in range(10))
    assert (mine / "3" / "short-1-4.png").read_bytes() == b"already here"  # never written over
    assert "3/short-1-4-2.png" in saved and "3/short-3-4.png" in saved and not any("-2-" in s for s in saved)
    # each file is exactly what the net read: read back, the same 28x28 image
    page = read(load_image(folder / "short.png"), unsure)
    first = [d for d in page.digits if d.line == 0]
    for k, d in enumerate(first):
        assert torch.equal(preprocess(load_image(mine / str(k) / f"short-1-{k + 1}{'-2' if k == 3 else ''}.png")),
                           d.pixels)


@pytest.mark.quick
def test_save_digits_mistakes_are_one_line(untrained, page_files, tmp_path):
    (tmp_path / "file").write_text("in the way\n", encoding="utf-8")
    page = page_files[0] / "page.jpg"
    cases = [[page, "--save-digits", tmp_path / "out"], [page, "--expect", "12a"],
             [page, "--save-digits", tmp_path / "file" / "x", "--expect", "0123456789"]]
    results = run_each("predict.py", [[*c, "--checkpoint", untrained] for c in cases], cwd=tmp_path)
    expected = ["--save-digits needs --expect DIGITS", "argument --expect: invalid", "--save-digits: cannot make"]
    for (status, err), start in zip(results, expected):
        assert status == 2 and err.startswith(f"error: {start}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_one_image_gives_the_same_probabilities_every_way(trained, mnist_test, page_files, tmp_path):
    """One image file read every way the lab reads one: read() itself; predict.py beside another photo and a page
    (which once ran the net a second time on the digits alone, all in one batch); predict.py --save-digits, then
    test.py --images on the file it saved; draw.py's /predict and /read. The same ten probabilities each time, to
    the last digit: they all call reading/pages.read(), and a digit alone is a page of one digit."""
    import draw
    from lab.checkpoint import load_checkpoint
    images, labels = mnist_test
    folder, _ = page_files
    one = folder / "one.png"
    user_photo(images[1], np.random.default_rng(5)).save(tmp_path / "other.png")
    model, ckpt = load_checkpoint(trained["checkpoint"])
    page = read(one, classifier(model, ckpt))
    assert len(page.digits) == 1 and page.image.size == Image.open(one).size
    expected = page.digits[0].probabilities.tolist()
    label = str(labels[0])  # one.png is MNIST's first test digit, photographed

    def predicted(*args):
        """predict.py's ten probabilities for the first file given, from --json with --topk 10."""
        # on the CPU, as read() above: a GPU's kernels would round otherwise
        proc = run_py("predict.py", *args, "--checkpoint", trained["checkpoint"], "--topk", 10, "--device", "cpu",
                      "--json", tmp_path / "p.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        first = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["predictions"][0]
        return [p for _, p in sorted((t["digit"], t["probability"]) for t in first["topk"])]

    assert predicted(one, tmp_path / "other.png", folder / "page.jpg") == expected
    assert predicted(one, "--save-digits", tmp_path / "mine", "--expect", label) == expected
    saved = tmp_path / "mine" / label / "one-1-1.png"
    assert read(saved, classifier(model, ckpt)).digits[0].probabilities.tolist() == expected
    proc = run_py("test.py", "--images", tmp_path / "mine", "--checkpoint", trained["checkpoint"], "--data-dir",
                  trained["data_dir"], "--json", tmp_path / "t.json", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tested,) = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))["files"]
    assert tested["probability"] == max(expected) and tested["prediction"] == int(np.argmax(expected))
    # draw.py's /predict and /read, called as the server calls them
    net = draw.ServedNet(trained["checkpoint"])
    assert net.predict(one.read_bytes())["probabilities"] == expected
    assert net.read_page(one.read_bytes())["digits"][0]["probabilities"] == expected


def test_bench_pages_quick(trained, data_dir, tmp_path):
    proc = run_py("bench.py", "--pages", trained["checkpoint"], "--quick", "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in rows[0].strip("|").split("|")] == [
        "spacing", "sheets", "digits", "digits right", "lines", "lines right", "order right"]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["wide", "normal", "close", "touching", "overlapping",
                                                         "wide to touching"]
    for row in rows[1:4]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "3" and cells[6] == "3/3" and float(cells[3].rstrip("%")) >= 80, row
