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
    """

    def __init__(self, channels=(32, 64, 64), hidden=128, batchnorm=False, dropout=0.0):
        super().__init__()
        layers, c_in, size = [], 1, 28
        for c_out in channels:
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
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


# name -> class. Each takes only keyword options with defaults, and the
# options must be plain values (numbers, bools, lists) so they fit in a
# checkpoint that loads with weights_only=True.
MODELS = {"cnn": Net}


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
