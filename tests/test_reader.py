"""The reader of touching digits (reading/reader.py, train_reader.py) and how reading/pages.py cuts with it.

The reader's own accuracy takes a training of minutes (python train_reader.py) and is measured by bench.py
--pages, with the figures in docs/predict.md. Here: its decoding, the cut into as many digits as a reader
reads (with a reader that knows the truth, and the session's digit net), a short real training, and the
one-line errors."""
import json

import numpy as np
import pytest
import torch
from test_pages import mnist_test, net, sheet_of  # noqa: F401 (fixtures)

from conftest import run_each, run_py
from reading.pages import read
from reading.reader import Reader, decode, load_reader, read_pieces, reader_input
from reading.sheets import make_piece, score


def columns(*reads):
    """CTC outputs [T, 11] whose best path is `reads`: "-" the blank, else a digit; each column 0.9 sure."""
    probs = torch.full((len(reads), 11), 0.01)
    for t, c in enumerate(reads):
        probs[t, 0 if c == "-" else int(c) + 1] = 0.9
    return probs


@pytest.mark.quick
def test_decoding_joins_repeats_and_keeps_digits_apart_by_a_blank():
    probs = columns("-", "3", "3", "-", "3", "5", "5", "-", "-", "8")
    assert decode(probs, 10)[0] == "335" + "8"
    assert decode(probs, 8)[0] == "335"  # only the piece's own columns: the rest is padding
    assert decode(columns("-", "-"), 2) == ("", [])
    text, each = decode(probs, 10)
    assert len(each) == 4 and all(abs(float(p.sum()) - 1) < 1e-6 for p in each)
    assert [int(p.argmax()) for p in each] == [3, 3, 5, 8]


@pytest.mark.quick
def test_pieces_to_learn_from_touch_and_are_read_at_one_height(mnist_test):
    images, labels = mnist_test
    rng = np.random.default_rng(0)
    made = [make_piece(images, labels, rng) for _ in range(60)]
    assert {len(t) for _, t in made} >= {1, 2, 3}
    for ink, text in made:
        a = reader_input(ink)
        assert a.shape[0] == 28 and a[:2].max() == 0 and a[-2:].max() == 0 and a[2:-2].max() > 0.5
    # a piece of two digits or more is one piece of ink, or nearly (a digit's own gap, a stroke's end apart)
    from scipy import ndimage
    joined = [ndimage.label(ink > 0)[1] <= len(text) for ink, text in made if len(text) >= 2]
    assert np.mean(joined) >= 0.8
    # and an untrained reader reads any batch of them, of any widths: one answer each
    assert len(read_pieces(Reader().eval(), [ink for ink, _ in made[:7]])) == 7


def knowing(truth):
    """A reader that reads every piece it is shown as `truth`, surely: what a perfect reader says of a pair."""
    def reads(inks):
        return [(truth, [torch.nn.functional.one_hot(torch.tensor(int(d)), 10).float() for d in truth])
                for _ in inks]
    return reads


def test_a_piece_is_cut_into_as_many_digits_as_the_reader_reads(mnist_test, net):
    """A touching pair beside a 1 (too narrow to be shown to the reader): told that the pair holds its two
    digits, the page is cut into them, each box on its digit, read as the reader read them. Told one digit,
    the pair stays whole and the net reads it; told three, it is cut into three."""
    images, labels = mnist_test
    right = 0
    for seed in range(8):
        a, b = 40 + 2 * seed, 41 + 2 * seed
        sheet = sheet_of(mnist_test, [a, b, 2], "touching", gaps=[None, 0.6, 0], seed=seed)
        pair = f"{labels[a]}{labels[b]}"
        page = read(sheet.image, net, knowing(pair))
        assert page.lines == [pair + "1"], (seed, page.lines)
        assert [d.by_reader for d in page.digits] == [True, True, False]
        right += score(sheet, page.lines, [(d.line, d.box) for d in page.digits])[4]
        for (left, top, r, bottom), d in zip(sheet.boxes[0], page.digits):
            cx = (d.box[0] + d.box[2]) / 2
            assert left <= cx <= r, (seed, d.box)
        if seed < 3:
            one = read(sheet.image, net, knowing(str(labels[a])))
            assert len(one.digits) == 2 and not any(d.by_reader for d in one.digits)
            three = read(sheet.image, net, knowing(pair + "7"))
            assert three.lines == [pair + "71"]
    assert right == 8


def test_train_reader_saves_a_reader_that_predict_and_bench_read_with(tmp_path, data_dir, trained, mnist_test):
    """A short real training (it learns little in 8 steps: the figures of a full one are in docs/predict.md),
    saved with what it is, and read with by predict.py; the one-line errors of a reader that is not one."""
    out = tmp_path / "r.pth"
    proc = run_py("train_reader.py", "--pieces", 256, "--steps", 8, "--eval-every", 4, "--check-pieces", 40,
                  "--out", out, "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Made 256 pieces of touching digits") and "40 from the test digits" in lines[0]
    assert lines[1].startswith("step 4/8  loss ") and lines[2].startswith("step 8/8  loss ")
    assert lines[-1].startswith(f"Saved to {out} (step ")
    model, saved = load_reader(out)
    assert saved["step"] in (4, 8) and 0 <= saved["val_exact"] <= saved["val_digits"] <= 1
    assert 0 <= saved["test_exact"] <= 1 and saved["settings"]["pieces"] == 256
    images, labels = mnist_test
    sheet = sheet_of(mnist_test, [40, 41, 2], "touching", gaps=[None, 0.6, 0], seed=0)
    sheet.image.save(tmp_path / "pair.png")
    proc = run_py("predict.py", tmp_path / "pair.png", "--checkpoint", trained["checkpoint"], "--reader", out,
                  "--json", tmp_path / "p.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    digits = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["predictions"][0]["digits"]
    assert {d["read_by"] for d in digits} <= {"net", "reader"}
    assert any(d["read_by"] == "reader" for d in digits) == ("ʳ" in proc.stdout)

    (tmp_path / "broken.pth").write_bytes(out.read_bytes()[:300])
    cases = [[tmp_path / "pair.png", "--reader", tmp_path / "none.pth"],
             [tmp_path / "pair.png", "--reader", trained["checkpoint"]],
             [tmp_path / "pair.png", "--reader", tmp_path / "broken.pth"]]
    results = run_each("predict.py", [[*c, "--checkpoint", trained["checkpoint"]] for c in cases], cwd=tmp_path)
    expected = [f"no reader at {tmp_path / 'none.pth'}: train one with python train_reader.py",
                f"{trained['checkpoint']} is not a reader of touching digits",
                f"{tmp_path / 'broken.pth'} is not a readable reader"]
    for (status, err), start in zip(results, expected):
        assert status == 2 and err.startswith(f"error: {start}") and len(err.splitlines()) == 1, err
