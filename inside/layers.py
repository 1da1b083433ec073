"""What each layer of a net computes, as draw.py's page shows it: the feature maps each conv block hands
on, the activations of each hidden dense layer, and the names of the layers in each.

Works on every network of net.py (and the first member of an ensemble), for any number of threads at once.
"""

import threading

from torch import nn

SHORT = {"MaxPool2d": "MaxPool", "BatchNorm2d": "BatchNorm", "AvgPool2d": "AvgPool"}  # layer names on the page


class LayerOutputs:
    """Runs a model and keeps what each conv block and each hidden dense layer hands to the next layer.

    Forward pre-hooks see each layer's input as the model's own forward() runs:
    - a conv block's output is what enters the next Conv2d, or the Flatten after the last block
      (for cnn, after each block's pool and ReLU: 32x14x14, 64x7x7, 64x3x3);
    - a hidden dense layer's activations are what enters each Linear after the first (cnn: 128).
    Hooks run in the thread that calls the model, so each thread keeps its own (threading.local):
    one model serves all the server's requests at once, without a lock.
    """

    def __init__(self, model):
        self.model, self.local = model, threading.local()
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Flatten, nn.Linear)):
                m.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs):
        kept = getattr(self.local, "kept", None)
        if kept is None:  # the model run by someone else: keep nothing
            return
        x = inputs[0]
        if isinstance(module, nn.Linear):
            if kept["linears"]:  # the first Linear's input is the flattened image or maps, not a hidden layer
                kept["dense"].append(x[0].clone())
            kept["linears"] += 1
        else:
            if kept["convs"] and x.dim() == 4:  # the first Conv2d's input is the image itself
                kept["maps"].append(x[0].clone())
            kept["convs"] += isinstance(module, nn.Conv2d)

    def __call__(self, x):
        """model(x) -> (logits, [first image's maps C x H x W per conv block], [its activations per hidden layer])."""
        self.local.kept = {"maps": [], "dense": [], "convs": 0, "linears": 0}
        try:
            logits = self.model(x)
            return logits, self.local.kept["maps"], self.local.kept["dense"]
        finally:
            self.local.kept = None


def describe(model):
    """The layers in each conv block and each hidden dense layer, e.g. 'Conv 3×3 → MaxPool → ReLU'.

    Reads the modules in the order they were defined, which for every net in net.py is the order they run.
    """
    blocks, dense, current = [], [], None
    for m in model.modules():
        if list(m.children()) or isinstance(m, nn.Dropout):  # containers; dropout does nothing when reading
            continue
        if isinstance(m, nn.Conv2d):
            current = [f"Conv {m.kernel_size[0]}×{m.kernel_size[1]}"]
            blocks.append(current)
        elif isinstance(m, nn.Linear):
            current = [f"Linear {m.in_features}→{m.out_features}"]
            dense.append(current)
        elif isinstance(m, nn.Flatten):
            current = None
        elif current is not None:
            current.append(SHORT.get(type(m).__name__, type(m).__name__))
    return [" → ".join(b) for b in blocks], [" → ".join(d) for d in dense[:-1]]  # the last Linear gives the logits
