"""Augmentation: every training batch changed a little, at random, so that the net learns digits, not pixels.

    --augment        shift (--shift pixels), rotate (--rotate degrees), scale (--scale)
    --elastic PX     and bend: a smooth random displacement field, PX pixels on average (Simard et al., 2003)
    --thickness P    and, for a share P of the images, a thicker or thinner pen
    --lowres P       and, for a share P, a coarser resolution: the digit drawn on a grid of 9 to 16
                     pixels and enlarged again, as a small or blurred photo gives it

Everything is drawn for the whole batch at once on the images' device (a GPU too), from a generator
that lives there: no per-image Python, and no random numbers copied from the host at every step.
MNIST's pixels are normalised (lab/data.py), so a blank pixel is not 0: the work is done on the
images minus their background, where padding with zeros means paper, and the background added back.

Why not torchvision.transforms.v2? Its RandomAffine and ElasticTransform draw one set of parameters
per call, so every image of a batch would get the same shift and the same field; a call per image
would be the per-sample Python loop this lab avoids. The pieces below are torch's own grid_sample and
interpolate, one call each per batch, and a few where a plain form runs faster on a CPU: the affine grid
as two multiply-adds (affine_grid()), the pen's 3x3 maximum as four (dilation()), the coarse grid's
shrinking as two matrix products (area_matrix()).
"""

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lab.data import MEAN, STD

BACKGROUND = -MEAN / STD  # a 0 pixel (paper), normalised
ELASTIC_SIGMA = 4.0  # pixels: how smooth the field is (Simard et al.'s sigma)
LOWRES_SIZES = range(9, 17)  # the coarse grids --lowres draws a digit on (MNIST's digits fill 20 of 28 pixels)


@dataclass(frozen=True)
class Changes:
    """How far each random change may go (the flags above); one object, so that augment() takes three arguments."""

    degrees: float = 10.0  # rotations of up to ±degrees
    shift: float = 2.0  # shifts of up to ±shift pixels
    scale: float = 0.1  # sizes from 1 - scale to 1 + scale times
    elastic: float = 0.0  # pixels of elastic displacement, on average; 0: none
    thickness: float = 0.0  # the share of images drawn with another pen
    lowres: float = 0.0  # the share of images drawn on a coarser grid


def make(args, generator):
    """The augmentation a run's settings ask for, as a function of a batch of images; None without --augment."""
    if not args.augment:
        return None
    return functools.partial(
        augment,
        generator=generator,
        changes=Changes(
            degrees=args.rotate,
            shift=args.shift,
            scale=args.scale,
            elastic=args.elastic,
            thickness=args.thickness,
            lowres=args.lowres,
        ),
    )


def augment(x, generator, changes=Changes()):
    """Random changes of a normalised batch [N, 1, 28, 28]; `generator` must live on x's device."""
    x = x - BACKGROUND
    if changes.thickness:
        x = pen_width(x, generator, changes.thickness)
    grid = affine_grid(len(x), x, generator, changes.degrees, changes.shift, changes.scale)
    if changes.elastic:
        grid = grid + elastic_field(len(x), x, generator, changes.elastic)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    if changes.lowres:
        x = coarser(x, generator, changes.lowres)
    return (x + BACKGROUND).contiguous(memory_format=torch.channels_last)


def uniform(n, generator, device, columns=1):
    """n x columns numbers uniform in [-1, 1], drawn on the device."""
    return torch.rand(n, columns, generator=generator, device=device) * 2 - 1


def affine_grid(n, x, generator, degrees, shift, scale):
    """Each image's own rotation (±degrees), scaling (1 ± scale) and shift (±shift pixels), as a sampling grid.

    The grid is F.affine_grid(theta, x.shape, align_corners=False)'s, written out: in grid_sample's [-1, 1]
    coordinates the centre of pixel j of w is at (2j + 1) / w - 1, and an image's grid is its theta times
    (column, row, 1) at every pixel. F.affine_grid computes that as a batched matrix product with an inner
    dimension of 3, which on a CPU cost 0.56 ms a batch of 128, more than the rest of the augmentation; the
    two multiply-adds below cost 0.11 ms and agree with it to 5e-7 (tests/test_recipe.py).
    """
    r = uniform(n, generator, x.device, 4)
    angle = r[:, 0] * degrees * math.pi / 180
    zoom = 1 + r[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # One pixel of 28 is 2/28 in those coordinates.
    tx, ty = r[:, 2] * shift * 2 / 28, r[:, 3] * shift * 2 / 28
    h, w = x.shape[-2:]
    column = centres(w, x).view(1, 1, w)
    row = centres(h, x).view(1, h, 1)
    cos, sin, tx, ty = (v.to(x.dtype).view(n, 1, 1) for v in (cos, sin, tx, ty))
    return torch.stack([cos * column - sin * row + tx, sin * column + cos * row + ty], dim=-1)  # [N, H, W, 2]


def centres(size, x):
    """Where the centres of `size` pixels lie in grid_sample's [-1, 1] coordinates (align_corners=False)."""
    return (torch.arange(size, device=x.device, dtype=x.dtype) * 2 + 1) / size - 1


def gaussian_kernel(sigma, device, dtype):
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def elastic_field(n, x, generator, pixels):
    """Simard et al.'s elastic distortion: white noise smoothed by a Gaussian (sigma 4 pixels), a field per image.

    The field is scaled to `pixels` of displacement on average (root mean square), in grid units. Their
    sigma 4 with alpha 34 on uniform noise gives about 1.4 pixels.
    """
    h, w = x.shape[-2:]
    noise = torch.randn(n, 2, h, w, generator=generator, device=x.device, dtype=x.dtype)
    k = gaussian_kernel(ELASTIC_SIGMA, x.device, x.dtype)
    # separable: along the rows, then along the columns; each of the two channels (dx, dy) on its own
    field = F.conv2d(noise, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, len(k) // 2), groups=2)
    field = F.conv2d(field, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), padding=(len(k) // 2, 0), groups=2)
    field = field * (pixels / field.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-8))
    return field.permute(0, 2, 3, 1) * (2 / w)  # [N, H, W, 2], pixels -> grid units


def some(n, share, generator, device):
    """The indices of round(share * n) images of a batch of n, drawn at random, in random order.

    A fixed number, not a coin per image: the work below is then done on those images alone, with shapes
    known in advance, so a GPU never waits to learn how many there are.
    """
    return torch.randperm(n, generator=generator, device=device)[: round(share * n)]


def pen_width(x, generator, share):
    """For a share of the images, a thicker or a thinner pen: up to one pixel more or less on each side of a stroke.

    Grey dilation (a 3x3 maximum) thickens, erosion (a 3x3 minimum) thins; each image chosen moves a random
    part of the way towards one of them: the first half of those chosen thicker, the others thinner.
    Each image is dilated or eroded, not both, and only the chosen ones: a sixth of the work of doing both to
    every image at a share of 0.3 (bench.py --parts).
    """
    picked = some(len(x), share, generator, x.device)
    chosen = x[picked]
    half = len(picked) // 2
    thicker = dilation(chosen[:half])
    thinner = -dilation(-chosen[half:])
    amount = torch.rand(len(picked), 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
    return x.index_copy(0, picked, chosen + amount * (torch.cat([thicker, thinner]) - chosen))


def dilation(x):
    """Grey dilation: the largest value of the 3x3 pixels around each pixel, as F.max_pool2d(x, 3, stride=1,
    padding=1) gives it, to the bit: the largest of three columns, then of three rows.

    Not max_pool2d itself: on a CPU its kernel for a stride of 1 and one channel took 3 ms for 300 images
    (2 cores), these four maxima 0.15 ms (tests/test_recipe.py checks that the two agree).
    """
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    columns = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(columns[..., :-2, :], columns[..., 1:-1, :]), columns[..., 2:, :])


def coarser(x, generator, share):
    """For a share of the images, the digit drawn on a coarser grid and enlarged again, blocky or smooth.

    Those chosen (in random order) are split into as many parts as LOWRES_SIZES has sizes, a part for each
    size, since interpolate takes one size per call; in each part the first half is enlarged blocky, the
    others smooth. So every call draws on every grid size, with no number drawn on the host: train.py's calls
    hold 16 batches (lab/data.py), and one size for all of them made the coarse digits of 8x8 scans read
    worse (docs/results.md).
    """
    h = x.shape[-2]
    picked = some(len(x), share, generator, x.device)
    redrawn = []
    for size, part in zip(LOWRES_SIZES, picked.tensor_split(len(LOWRES_SIZES))):
        shrink = area_matrix(size, h, x.device, x.dtype)
        small = shrink @ x[part] @ shrink.T  # = F.interpolate(mode="area"), which MPS cannot do to these sizes
        half = len(part) // 2
        redrawn.append(F.interpolate(small[:half], size=(h, h), mode="nearest"))
        redrawn.append(F.interpolate(small[half:], size=(h, h), mode="bilinear", align_corners=False))
    return x.index_copy(0, picked, torch.cat(redrawn))


@functools.lru_cache(maxsize=None)
def area_matrix(size, h, device, dtype):
    """The size x h matrix A whose A @ image @ A.T is F.interpolate(image, (size, size), mode="area").

    Area interpolation is adaptive average pooling: output pixel i averages the input's rows (and columns)
    floor(i * h / size) to ceil((i + 1) * h / size), and a window's mean is its rows' means averaged over
    its columns. Two matrix products do it on every device: on Apple's GPUs (MPS) adaptive pooling stops
    with an error unless h is a multiple of size (pytorch issue 96056), and 28 is a multiple of none of
    LOWRES_SIZES. Made once per size, device and dtype (8 small matrices for a run).
    """
    i = torch.arange(size)
    first = i * h // size
    end = ((i + 1) * h + size - 1) // size  # the ceiling, in integers
    j = torch.arange(h)
    inside = (j >= first[:, None]) & (j < end[:, None])
    return (inside / (end - first)[:, None]).to(device=device, dtype=dtype)
