"""The networks. Only the model lives here: no data, no training loop.

`Net` is the design card's CNN: three conv+pool blocks into a dense head.
Other architectures used in lab reports live beside it in `MODELS`, so every
script builds any of them by name:

    model = build_model("cnn")                # the default, 130,890 parameters
    model = build_model("cnn", batchnorm=True, dropout=0.1)

A checkpoint stores the name and the options, so test.py and predict.py
rebuild exactly the net that was trained, without guessing.
"""
import torch
from torch import nn


class Net(nn.Module):
    """Three blocks of Conv(3x3, pad 1) -> ReLU -> MaxPool(2), then a dense head.

    With the defaults the feature maps go 1x28x28 -> 32x14x14 -> 64x7x7 -> 64x3x3
    (the last pool floors 7 to 3), flattened to 576 -> 128 -> 10 logits.

    Each block runs the pool before the ReLU. That is the same function, with the
    same gradients: ReLU never changes which of four values is largest, so
    max(relu(a), relu(b), ...) == relu(max(a, b, ...)). Pooling first applies the
    ReLU, forward and backward, to a quarter of the values: on a CPU the first
    block's 32x28x28 activations are memory-bound, and this makes training ~5% faster.
    """

    def __init__(self, channels=(32, 64, 64), hidden=128, batchnorm=False, dropout=0.0):
        super().__init__()
        layers, c_in, size = [], 1, 28
        for c_out in channels:
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True)]  # = ReLU then pool; see above
            c_in, size = c_out, size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),  # identity when dropout == 0
            nn.Linear(c_in * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )

    def forward(self, x):
        return self.head(self.features(x))


# The networks of the seed labs, kept exactly as the lab reports describe them
# so that students compare like with like. They take no options: each is one
# fixed design, built by a function, since a Sequential needs no class of its own.
# Every model takes [N, 1, 28, 28] (channels_last) and returns [N, 10] logits.

def mlp():
    """The fully connected lab: 784 -> 128 -> 256 -> 128 -> 64 -> 10, sigmoid activations.

    nn.Flatten reshapes rather than .view()s, so the channels_last input that the
    scripts feed every model is fine. Sigmoid (not ReLU) because that is what the
    lab compares: it saturates and trains slower, which is the lesson.
    """
    sizes = [28 * 28, 128, 256, 128, 64]
    layers = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 10))


def cnn2():
    """The two-conv lab: two Conv(5x5, pad 2) -> ReLU -> MaxPool(2) blocks, 16 and 32 channels.

    The padding keeps 28x28 through each conv, so the pools give 14x14, then 7x7: 32*7*7 = 1568.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def cnn4bn():
    """The batch-norm lab: four Conv(3x3, no padding) -> BatchNorm -> ReLU, pooling after the 2nd and 4th.

    Sizes: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4, so 128*4*4 = 2048 into 1024 -> 128 -> 10.
    """
    def block(c_in, c_out):
        # No conv bias: batch norm subtracts the batch mean right after, which cancels any bias.
        return [nn.Conv2d(c_in, c_out, kernel_size=3, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 128), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 1024), nn.ReLU(inplace=True),
        nn.Linear(1024, 128), nn.ReLU(inplace=True), nn.Linear(128, 10))


def examples():
    """PyTorch's examples/mnist net: two 3x3 convs (32, 64), max-pool, dropout 0.25, 9216 -> 128, dropout 0.5, -> 10.

    Sizes: 28 -> 26 -> 24 -> pool 12, so 64*12*12 = 9216. The example ends in
    log_softmax with nll_loss; we return logits for cross_entropy, which is the same loss.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, kernel_size=3), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, 10))


# name -> class or function that builds the net. Each takes only keyword options
# with defaults, and the options must be plain values (numbers, bools, lists) so
# they fit in a checkpoint that loads with weights_only=True.
MODELS = {"cnn": Net, "mlp": mlp, "cnn2": cnn2, "cnn4bn": cnn4bn, "examples": examples}


def build_model(name="cnn", **options):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**options)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    # `python net.py` prints each net's layers and size: a quick look for students.
    for name in MODELS:
        model = build_model(name)
        out = model(torch.zeros(2, 1, 28, 28))
        print(f"{name}: {count_parameters(model):,} parameters, output {tuple(out.shape)}")
        print(model)
