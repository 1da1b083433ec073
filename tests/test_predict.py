"""predict.py: MNIST-style preprocessing of users' images, and the script on real digits.

The "user photos" are made from real MNIST test digits: inverted to dark ink on light paper,
enlarged to a few hundred pixels, moved off-centre, in colour, on paper with a grey gradient,
some saved as JPEG. Nothing is committed: images and checkpoints live in pytest's tmp folders.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_each, run_py
from reading.images import ImageProblem, load_image, preprocess


@pytest.fixture(scope="module")
def digits(data_dir):
    """200 MNIST test digits (a fixed random choice) as uint8 numpy arrays, with their labels."""
    from lab.data import load_split
    images, labels = load_split(False, data_dir)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(7))[:200]
    return images[pick].numpy(), labels[pick].tolist()


def user_photo(digit, rng):
    """A white-on-black 28x28 MNIST digit -> an RGB 'photo' of dark ink on shaded paper."""
    size = 28 * int(rng.integers(8, 14))  # 224..364 px
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    h, w = size + int(rng.integers(60, 200)), size + int(rng.integers(60, 200))
    top, left = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))  # off-centre
    canvas = np.zeros((h, w), np.float32)
    canvas[top:top + size, left:left + size] = ink
    # paper lit unevenly: a 40-level gradient in a random direction that wraps once (like the shadow of a
    # fold), slightly warm, a little noise
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = (v / max(h, w) for v in np.ogrid[0:h, 0:w])  # a column and a row, broadcast below
    shade = 235 - 40 * ((np.cos(angle) * xs + np.sin(angle) * ys) % 1.0)
    paper = shade[..., None] * np.array([1.0, 0.98, 0.93])
    ink_colour = np.array([25.0, 30.0, 70.0])  # blue-black pen
    a = canvas[..., None]
    rgb = paper * (1 - a) + ink_colour * a + rng.normal(0, 2, (h, w, 1))
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def corr(a, b):
    """Correlation of two 28x28 images, best over shifts of up to one pixel.

    MNIST placed its digits by rounding the centre of mass to a whole pixel, computed before
    its own antialiasing; a digit at a .5 boundary may legitimately land one pixel over.
    """
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return max(float(torch.corrcoef(torch.stack([a.roll((dy, dx), (0, 1)).flatten(), b.flatten()]))[0, 1])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


# ---------------------------------------------------------------- preprocess, without a network

@pytest.mark.quick
def test_mnist_digit_is_kept_white_on_black(digits):
    images, _ = digits
    scores = []
    for d in images[:50]:
        out = preprocess(Image.fromarray(d))
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 1
        assert out[0].sum() == 0 and out[:, 0].sum() == 0  # black border
        scores.append(corr(out, d))
    # an MNIST digit is already in MNIST form: it comes back nearly unchanged (not inverted, not moved)
    assert min(scores) > 0.8 and sorted(scores)[25] > 0.95, scores


@pytest.mark.quick
def test_dark_on_light_is_inverted(digits):
    images, _ = digits
    for d in images[:20]:
        assert corr(preprocess(Image.fromarray(255 - d)), preprocess(Image.fromarray(d))) > 0.98


@pytest.mark.quick
def test_user_photo_becomes_mnist_like(digits):
    images, _ = digits
    rng = np.random.default_rng(0)
    scores = []
    for d in images[:20]:
        out = preprocess(user_photo(d, rng))
        scores.append(corr(out, preprocess(Image.fromarray(d))))
        # fitted into 20 px, centre of mass at the centre (MNIST's convention: pixel 14, 14)
        rows, cols = (out > 0.05).any(1).nonzero().flatten(), (out > 0.05).any(0).nonzero().flatten()
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21)
        r = torch.arange(28.0)
        assert abs(float((out.sum(1) * r).sum() / out.sum()) - 14) <= 0.6
        assert abs(float((out.sum(0) * r).sum() / out.sum()) - 14) <= 0.6
    assert min(scores) > 0.75 and sorted(scores)[10] > 0.9, scores


@pytest.mark.quick
@pytest.mark.parametrize("ink", [0, 255], ids=["black-ink", "white-ink"])
def test_rgba_digit_on_transparent_background(digits, ink):
    d = digits[0][0]
    rgba = np.zeros((28 * 6, 28 * 6, 4), np.uint8)  # every pixel black (or white) ...
    rgba[..., :3] = ink
    rgba[..., 3] = np.asarray(Image.fromarray(d).resize((28 * 6, 28 * 6)))  # ... only the digit opaque
    out = preprocess(Image.fromarray(rgba, "RGBA"))
    assert corr(out, preprocess(Image.fromarray(d))) > 0.9


@pytest.mark.quick
def test_exif_orientation_is_honoured(digits, tmp_path):
    d = digits[0][1]
    upright = Image.fromarray(255 - d).resize((200, 200))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = preprocess(load_image(tmp_path / "phone.jpg"))
    assert corr(out, preprocess(upright)) > 0.9


@pytest.mark.quick
def test_gif_first_frame_and_palette(digits, tmp_path):
    a, b = digits[0][2], digits[0][3]
    frames = [Image.fromarray(255 - x).resize((112, 112)).convert("P") for x in (a, b)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    out = preprocess(load_image(tmp_path / "anim.gif"))
    assert corr(out, preprocess(Image.fromarray(a))) > 0.9
    assert corr(out, preprocess(Image.fromarray(b))) < corr(out, preprocess(Image.fromarray(a)))


@pytest.mark.quick
@pytest.mark.parametrize("page", ["white", "gradient", "noise", "black"])
def test_blank_page_has_no_digit(page):
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:300, 0:400]
    img = {"white": np.full((300, 400), 250.0), "gradient": 200 + 50 * xs / 400,
           "noise": 230 + rng.normal(0, 3, (300, 400)), "black": np.zeros((300, 400))}[page]
    with pytest.raises(ImageProblem, match="no digit"):
        preprocess(Image.fromarray(img.clip(0, 255).astype(np.uint8)))


# ---------------------------------------------------------------- the script, with a trained network

def make_photos(digits, folder, n):
    """The first n of the 200 user photos in `folder`, half PNG, half JPEG; returns (folder, {file name: label})."""
    images, labels = digits
    rng = np.random.default_rng(42)
    truth = {}
    for i, (d, y) in enumerate(zip(images[:n], labels[:n])):
        name = f"photo{i:03d}." + ("png" if i % 2 == 0 else "jpg")
        # (PNG at zlib level 1: the same pixels, saved 5 times as fast as at the default 6)
        user_photo(d, rng).save(folder / name, **({"quality": 85} if name.endswith("jpg") else {"compress_level": 1}))
        truth[name] = y
    return folder, truth


@pytest.fixture(scope="module")
def photos(digits, tmp_path_factory):
    """200 user photos in a folder, half PNG, half JPEG; returns (folder, {file name: label})."""
    return make_photos(digits, tmp_path_factory.mktemp("photos"), 200)


@pytest.fixture(scope="module")
def two_photos(digits, tmp_path_factory):
    """The first two of them, the same files: all the quick tier needs (the 200 take 3 s to make)."""
    return make_photos(digits, tmp_path_factory.mktemp("two-photos"), 2)


def test_predict_reads_user_photos(trained, photos, tmp_path):
    folder, truth = photos
    proc = run_py("predict.py", folder, "--checkpoint", trained["checkpoint"], "--json", tmp_path / "p.json",
                  "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    preds = {p["file"].split("/")[-1]: p["prediction"] for p in result["predictions"]}
    assert sorted(preds) == sorted(truth)
    correct = sum(preds[n] == y for n, y in truth.items())
    print(f"user photos recognised: {correct}/{len(truth)}")
    assert correct >= 190, f"only {correct}/200 user photos recognised"
    # one line per image: name -> digit (probability), top 3; the same numbers as the JSON
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 200
    first = result["predictions"][0]
    assert lines[0].startswith(first["file"])
    assert f"→  {first['prediction']}  ({100 * first['probability']:.1f}%)   top 3: " in lines[0]
    top = [t["probability"] for t in first["topk"]]
    assert len(top) == 3 and top == sorted(top, reverse=True) and sum(top) <= 1 + 1e-6
    assert first["topk"][0]["digit"] == first["prediction"]


@pytest.mark.quick
def test_predict_show_and_topk(trained, two_photos, tmp_path):
    folder, _ = two_photos
    proc = run_py("predict.py", folder / "photo000.png", folder / "photo001.jpg", "--checkpoint",
                  trained["checkpoint"], "--topk", 1, "--show", tmp_path / "seen.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and "top" not in lines[0] and lines[2] == f"Wrote {tmp_path / 'seen.png'}"
    with Image.open(tmp_path / "seen.png") as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 150


@pytest.mark.quick
def test_bad_inputs_one_line_each_others_still_processed(trained, two_photos, digits, tmp_path):
    good = two_photos[0] / "photo000.png"
    (tmp_path / "notes.png").write_text("not an image at all\n", encoding="utf-8")
    data = (good).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    Image.new("L", (400, 300), 245).save(tmp_path / "blank.png")
    Image.new("1", (8000, 7000), 1).save(tmp_path / "huge.png")  # 56 megapixels, a small file
    (tmp_path / "empty").mkdir()
    bad = ["missing.png", "notes.png", "cut.png", "blank.png", "huge.png", "empty"]
    proc = run_py("predict.py", *[tmp_path / b for b in bad[:3]], good, *[tmp_path / b for b in bad[3:]],
                  "--checkpoint", trained["checkpoint"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == len(bad)
    reasons = ["no such file", "not an image", "truncated", "no digit", "too large", "no image files"]
    for line, name, reason in zip(errors, bad, reasons):
        assert line.startswith("error: ") and name in line and reason in line, line
    assert proc.stdout.count("→") == 1 and str(good) in proc.stdout


@pytest.mark.quick
def test_no_checkpoint_and_bad_flags(two_photos, tmp_path):
    img = two_photos[0] / "photo000.png"
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    none, junk, topk = run_each("predict.py", [[img, "--checkpoint", tmp_path / "none.pth"],
                                               [img, "--checkpoint", tmp_path / "junk.pth"], [img, "--topk", 11]],
                                cwd=tmp_path)
    assert none[0] == 2 and "Traceback" not in none[1]
    assert none[1].strip() == f"error: no checkpoint at {tmp_path / 'none.pth'}: run python train.py first"
    assert junk[0] == 2 and len(junk[1].strip().splitlines()) == 1
    assert topk[0] == 2 and "1 to 10" in topk[1] and "Traceback" not in topk[1]


@pytest.mark.quick
def test_load_image_from_bytes_and_file_objects(two_photos):
    """draw.py hands load_image the bytes it was sent: the same image, and the same one-line problems."""
    path = two_photos[0] / "photo001.jpg"
    data = path.read_bytes()
    expected = preprocess(load_image(path))
    with open(path, "rb") as f:
        for source in (data, bytearray(data), memoryview(data), f):
            assert torch.equal(preprocess(load_image(source)), expected)
    for bad, reason in ((b"", "not an image"), (b"hello", "not an image"), (data[:len(data) // 2], "truncated")):
        with pytest.raises(ImageProblem, match=reason):
            load_image(bad)
