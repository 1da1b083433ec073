"""MNIST as tensors: download (or copy from a mirror), split, normalise, batch (augmentation: lab/augment.py).

The whole data set is 70,000 images of 28x28 bytes (55 MB), so we read each
split once into one tensor, move it to the device, and slice batches out of it.
That replaces a DataLoader that builds every sample with a PIL image and
ToTensor in Python, which is the bottleneck of most MNIST tutorials on a CPU.
"""

import hashlib
import math
import os
import shutil
import urllib.error
from pathlib import Path

import torch

from lab.cli import UserError
from lab.files import make_folder

# The four files of the official distribution, extracted: (images, labels) of each split.
# torchvision (imported only when one is missing: its import alone takes 1.4 s) pins their
# md5 sums and knows the mirrors; reading them once they are here is the few lines of read_idx.
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The mean and standard deviation of the 60,000 training pixels (scaled to 0..1).
# They are stored in every checkpoint so that testing and prediction normalise
# exactly as training did.
MEAN, STD = 0.1307, 0.3081

MIRROR_ENV = "MNIST_MIRROR"
OFFLINE_HINT = (
    "offline? pass --mirror DIR (or set MNIST_MIRROR) to a folder holding the four "
    "official .gz files, or copy them into {raw}/"
)


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remove(*paths):
    for p in paths:
        Path(p).unlink(missing_ok=True)


def _fetch(source, filename, md5, raw):
    """Put `filename` (a .gz) from `source` into `raw` and extract it; raise on any failure.

    `source` is a local folder or an http(s) URL prefix. On failure nothing is left
    behind: neither a partial .gz nor a half-extracted file.
    """
    from torchvision.datasets.utils import download_and_extract_archive, extract_archive  # slow import: see FILES

    gz = raw / filename
    extracted = raw / filename[: -len(".gz")]
    try:
        if source.startswith(("http://", "https://")):
            download_and_extract_archive(
                source.rstrip("/") + "/" + filename, download_root=str(raw), filename=filename, md5=md5
            )
        else:
            src = Path(source).expanduser() / filename
            if not src.is_file():
                raise FileNotFoundError(f"no {filename} in {source}")
            if src.resolve() != gz.resolve():
                shutil.copyfile(src, gz)
            if _md5(gz) != md5:
                raise ValueError(f"{filename} from {source} fails its md5 check (corrupt or not the official file)")
            extract_archive(str(gz), str(raw))
    except BaseException:  # also Ctrl-C: never leave a partial file that looks finished
        _remove(gz, extracted)
        raise


def ensure_mnist(data_dir="mnist", mirror=None):
    """Make sure the four MNIST files are extracted under <data_dir>/MNIST/raw/.

    Sources are tried in order: .gz files already placed in raw/ by hand, the
    `mirror` argument or $MNIST_MIRROR, then torchvision's own mirrors.
    """
    raw = Path(data_dir) / "MNIST" / "raw"
    if all((raw / name).is_file() for names in FILES.values() for name in names):
        return
    make_folder(raw, f"--data-dir {data_dir}")  # before torchvision's slow import: a bad path fails at once
    from torchvision.datasets import MNIST  # here: its import takes 1.3 s, and only a missing file needs it

    missing = [(f, md5) for f, md5 in MNIST.resources if not (raw / f[: -len(".gz")]).is_file()]
    mirror = mirror or os.environ.get(MIRROR_ENV)
    sources = [str(raw)] + ([mirror] if mirror else []) + list(MNIST.mirrors)
    for filename, md5 in missing:
        errors = []
        for source in sources:
            if source == str(raw) and not (raw / filename).is_file():
                continue  # nothing placed by hand
            try:
                _fetch(source, filename, md5, raw)
                break
            except (OSError, ValueError, RuntimeError, urllib.error.URLError) as e:
                errors.append(f"{source} ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
        else:
            raise UserError(f"could not get {filename}; tried: {'; '.join(errors)}. " + OFFLINE_HINT.format(raw=raw))


def read_idx(path):
    """Read an IDX file, MNIST's format, into a uint8 tensor.

    The header is 4 bytes: two zeros, 0x08 (the data are unsigned bytes) and the number of
    dimensions; then each dimension as a big-endian 32-bit integer; then the bytes, row by row.
    """
    path = Path(path)
    data = bytearray(path.stat().st_size)
    with open(path, "rb") as f:  # straight into one writable buffer: the tensor below is a view of it
        f.readinto(data)
    ndim = data[3] if len(data) > 3 and data[:3] == b"\0\0\x08" else 0
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if not ndim or len(data) != 4 + 4 * ndim + math.prod(dims):
        raise UserError(
            f"{path} is not a complete MNIST file (corrupt or truncated); delete it and run again to fetch it afresh"
        )
    return torch.frombuffer(data, dtype=torch.uint8, offset=4 + 4 * ndim).view(dims)


def load_split(train, data_dir="mnist", mirror=None):
    """Return (images uint8 [N, 28, 28], labels int64 [N]) of the train or test split."""
    ensure_mnist(data_dir, mirror)
    raw = Path(data_dir) / "MNIST" / "raw"
    images, labels = (read_idx(raw / name) for name in FILES[train])
    if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise UserError(
            f"the MNIST files in {raw} do not match each other ({tuple(images.shape)} "
            f"images, {tuple(labels.shape)} labels); delete that folder and run again"
        )
    return images, labels.long()


def split_train_val(images, labels, val_size, seed=0):
    """A fixed, seeded split of the 60,000 training images into train and validation.

    The seed is separate from the training seed, so runs with different training
    seeds are all validated (and compared) on the same images.
    """
    if not 0 <= val_size < len(images):
        raise UserError(f"--val-size must be between 0 and {len(images) - 1}, got {val_size}")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:val_size], perm[val_size:]
    return (images[train], labels[train]), (images[val], labels[val])


def normalize(images, mean=MEAN, std=STD):
    """uint8 [N, 28, 28] (or [N, 1, 28, 28]) -> float [N, 1, 28, 28], zero mean, unit std.

    The result is in channels_last memory format, which is what the fast CPU and
    GPU convolution kernels want (for one channel it is the same bytes anyway).
    """
    x = images.reshape(-1, 1, 28, 28).float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


SPLIT = ("val_size", "limit", "test_limit")  # the settings (lab/settings.py) that decide what load_data returns


def load_data(args, device):
    """Read MNIST once; return normalised tensors on `device`: {"train", "val", "test"}: (images, labels).

    From train.py's settings `args`: --data-dir and --mirror, and SPLIT: --val-size images held out to
    validate on, and with --limit and --test-limit only the first so many training and test images."""
    images, labels = load_split(True, args.data_dir, args.mirror)
    (tx, ty), (vx, vy) = split_train_val(images, labels, args.val_size)
    if args.limit:
        tx = tx[: args.limit]
        ty = ty[: args.limit]
    test_x, test_y = load_split(False, args.data_dir, args.mirror)
    test_x = test_x[: args.test_limit]
    test_y = test_y[: args.test_limit]
    return {
        name: (normalize(x).to(device), y.to(device))
        for name, (x, y) in {"train": (tx, ty), "val": (vx, vy), "test": (test_x, test_y)}.items()
    }


def batches(n, batch_size, generator=None, device="cpu"):
    """Index tensors covering range(n) in batches, shuffled when a generator is given."""
    order = (
        torch.randperm(n, generator=generator).to(device) if generator is not None else torch.arange(n, device=device)
    )
    return order.split(batch_size)


# Batches augmented in one call (lab/augment.py): each call costs some fixed work (about 55 small operations,
# and on a CPU the threads woken again after a training step), which a call for every batch paid once a step:
# 1.9 ms of a 24 ms step on a 2-core CPU, against 1.0 ms for the same images augmented 16 batches at a time.
AUGMENT_AT_ONCE = 16


def training_batches(train_set, batch_size, generator, augment=None, rank=0, world=1):
    """One epoch of shuffled batches of train_set (images, labels): (images, labels, weight) of this
    process's share of each.

    One process takes all of every batch, with weight 1. Under torchrun, process `rank` of `world`
    takes every world-th image of it: all drew the same permutation (same seed), so the shares never
    overlap and together make the whole batch, without a message between the processes. `weight`,
    the share's size over an even share, scales its loss so that DDP's average of the processes'
    gradients is exactly the whole batch's, even when the batch does not split evenly.
    `augment`: a function that changes a batch of images at random (lab/augment.py), or None; it is
    given AUGMENT_AT_ONCE batches' images together, and changes each image on its own.
    """
    images, labels = train_set
    order = batches(len(images), batch_size, generator, images.device)
    for first in range(0, len(order), AUGMENT_AT_ONCE):
        group = order[first : first + AUGMENT_AT_ONCE]
        shares = [idx[rank::world] for idx in group]
        x = images[torch.cat(shares)]
        if augment is not None:
            x = augment(x)
        for idx, mine, share in zip(group, shares, x.split([len(mine) for mine in shares])):
            yield share, labels[mine], len(mine) * world / len(idx)
