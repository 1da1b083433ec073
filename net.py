"""The networks. Only the model lives here: no data, no training loop.

`Net` is the design card's CNN: three conv+pool blocks into a dense head.
Other architectures used in lab reports live beside it in `MODELS`, so every
script builds any of them by name:

    model = build_model("cnn")                # the default, 130,890 parameters
    model = build_model("cnn", batchnorm=True, dropout=0.1)

A checkpoint stores the name and the options, so test.py and predict.py
rebuild exactly the net that was trained, without guessing.

    python net.py            # every net's layers: output shape and parameters of each
    python net.py cnn4bn     # one of them
"""

from torch import nn

# The activations a lab report compares (--activation). Every one of them is monotonic: it never
# changes which of two values is larger, which Net's pooling below relies on.
ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class Net(nn.Module):
    """Three blocks of Conv(3x3, pad 1) -> ReLU -> MaxPool(2), then a dense head.

    With the defaults the feature maps go 1x28x28 -> 32x14x14 -> 64x7x7 -> 64x3x3
    (the last pool floors 7 to 3), flattened to 576 -> 128 -> 10 logits.
    `channels` gives each block's width, and as many blocks as it has values
    (1 to 4: a fifth pool would have no pixel left); `hidden` the dense layer's.

    Each block runs the pool before the activation. That is the same function, with
    the same gradients: a monotonic activation never changes which of four values is
    largest, so max(relu(a), relu(b), ...) == relu(max(a, b, ...)). Pooling first applies
    the activation, forward and backward, to a quarter of the values: on a CPU the first
    block's 32x28x28 activations are memory-bound, and this makes training ~5% faster.

    Batch norm (batchnorm=True) goes between the conv and the pool, or, in the first
    `norm_after_pool` blocks, between the pool and the activation, where it normalises a
    quarter of the values. train.py puts it after the pool in every block but the last:
    there it costs 6% of a step instead of a fifth on a CPU (bench.py --parts), and the
    last block's maps are small (7x7), where it costs little before the pool. After the
    last pool too, the nets read printed digits about 0.3 points worse (docs/results.md).
    After the pool is not quite the same function (a channel whose scale turns negative
    would pool its minimum). The default, 0, is the first order in every block, which
    every net saved before 2026-12-07 has: their checkpoints name only batchnorm. Those
    saved that day before the count say True: after the pool in every block.
    """

    def __init__(
        self, channels=(32, 64, 64), hidden=128, batchnorm=False, dropout=0.0, activation="relu", norm_after_pool=0
    ):
        super().__init__()
        if not 1 <= len(channels) <= 4:
            raise ValueError(
                f"Net takes 1 to 4 conv blocks, not {len(channels)}: 28 pixels halve to 1 after four pools"
            )
        if norm_after_pool is True:  # the nets saved on 2026-12-07 before the count: after every pool
            norm_after_pool = len(channels)
        layers = []
        c_in = 1  # channels in: a grey image
        size = 28  # its side, halved by each block's pooling
        for block, c_out in enumerate(channels):
            # No conv bias with batch norm: it subtracts the batch's mean, which cancels any bias.
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm))
            norm = [nn.BatchNorm2d(c_out)] if batchnorm else []
            if block < norm_after_pool:
                layers += [nn.MaxPool2d(2), *norm, ACTIVATIONS[activation]()]
            else:
                layers += [*norm, nn.MaxPool2d(2), ACTIVATIONS[activation]()]  # the pool = activation then pool: above
            c_in = c_out
            size = size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),  # identity when dropout == 0
            nn.Linear(c_in * size * size, hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )

    def forward(self, x):
        return self.head(self.features(x))


# The networks of the seed labs, as the lab reports describe them, so that students
# compare like with like. Each is one design, built by a function, since a Sequential
# needs no class of its own; the options are what the reports vary (the activation,
# batch norm), and their defaults are the reports' nets.
# Every model takes [N, 1, 28, 28] (channels_last) and returns [N, 10] logits.


def mlp(activation="sigmoid"):
    """The fully connected lab: 784 -> 128 -> 256 -> 128 -> 64 -> 10, sigmoid activations.

    nn.Flatten reshapes rather than .view()s, so the channels_last input that the
    scripts feed every model is fine. Sigmoid (not ReLU) because that is what the
    lab compares: it saturates and trains slower, which is the lesson.
    """
    sizes = [28 * 28, 128, 256, 128, 64]
    layers = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 10))


def cnn2(activation="relu"):
    """The two-conv lab: two Conv(5x5, pad 2) -> ReLU -> MaxPool(2) blocks, 16 and 32 channels.

    The padding keeps 28x28 through each conv, so the pools give 14x14, then 7x7: 32*7*7 = 1568.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5, padding=2),
        ACTIVATIONS[activation](),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2),
        ACTIVATIONS[activation](),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def cnn4bn(batchnorm=True, activation="relu"):
    """The batch-norm lab: four Conv(3x3, no padding) -> BatchNorm -> ReLU, pooling after the 2nd and 4th.

    Sizes: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4, so 128*4*4 = 2048 into 1024 -> 128 -> 10.
    batchnorm=False gives the same net without batch norm, for the lab's comparison.
    """

    def block(c_in, c_out):
        if not batchnorm:
            return [nn.Conv2d(c_in, c_out, kernel_size=3), ACTIVATIONS[activation]()]
        # No conv bias: batch norm subtracts the batch mean right after, which cancels any bias.
        return [nn.Conv2d(c_in, c_out, kernel_size=3, bias=False), nn.BatchNorm2d(c_out), ACTIVATIONS[activation]()]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        *block(64, 128),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 1024),
        ACTIVATIONS[activation](),
        nn.Linear(1024, 128),
        ACTIVATIONS[activation](),
        nn.Linear(128, 10),
    )


def examples():
    """PyTorch's examples/mnist net: two 3x3 convs (32, 64), max-pool, dropout 0.25, 9216 -> 128, dropout 0.5, -> 10.

    Sizes: 28 -> 26 -> 24 -> pool 12, so 64*12*12 = 9216. The example ends in
    log_softmax with nll_loss; we return logits for cross_entropy, which is the same loss.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


# name -> class or function that builds the net. Each takes only keyword options
# with defaults, and the options must be plain values (numbers, strings, bools, lists)
# so they fit in a checkpoint that loads with weights_only=True.
MODELS = {"cnn": Net, "mlp": mlp, "cnn2": cnn2, "cnn4bn": cnn4bn, "examples": examples}


def build_model(name="cnn", **options):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**options)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    # `python net.py [NAME ...]`: each net's layers with the output shape and parameters of each,
    # for one 28x28 image (torchinfo's summary).
    from torchinfo import summary

    from lab.cli import UserError, make_parser, run_script

    def main():
        parser = make_parser("Print each network's layers: their output shapes and parameters.")
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help=f"networks to show (default: all of {', '.join(MODELS)})"
        )
        names = parser.parse_args().names or list(MODELS)
        for name in names:
            if name not in MODELS:
                raise UserError(f"no network {name!r} in net.py: choose from {', '.join(MODELS)}")
        for name in names:
            print(f"{name}:")
            print(
                summary(
                    build_model(name),
                    input_size=(1, 1, 28, 28),
                    col_names=("output_size", "num_params"),
                    depth=3,
                    verbose=0,
                ),
                end="\n\n",
            )
        return 0

    run_script(main)
