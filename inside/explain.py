"""Why the net reads what it reads, and how little change makes it read something else.

Both come from Captum, PyTorch's library for them, and work on any network of net.py:

    Integrated Gradients  each input pixel's share of one digit's score (its logit): the pixel's
                          gradient averaged along the straight path from a blank image to this one,
                          times the pixel's value. The shares add up to the score's rise from blank.
    Grad-CAM              the last conv block's feature maps weighted by how much the digit's score
                          grows with each (the mean of its gradient), summed and spread over 28x28:
                          where the features for that digit are. Networks without conv layers have none.
    FGSM, PGD             attacks: every pixel moves by at most ε, in the direction that lowers the
                          digit read (or raises a chosen target digit), once (FGSM) or in steps (PGD).

Everything here works on pixels 0..1, as an image is before normalisation: the net is wrapped as
nn.Sequential(Normalize, net). So ε = 0.1 means "a tenth of the way from black to white", as in
PyTorch's FGSM tutorial, and a blank image is all zeros (-MEAN/STD once normalised: the background
the net saw in training, not the 0 of normalised space, which would be a grey page).
"""

import copy
import warnings

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from captum.robust import FGSM, PGD
from torch import nn

from lab.data import MEAN, STD

IG_STEPS = 32  # points on the path from blank (Gauss-Legendre): the shares then add up to within ~1%
PGD_STEPS = 20  # PGD's steps; each may move a pixel by 2.5 ε / PGD_STEPS (Madry et al.'s rule)
EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # those of PyTorch's FGSM tutorial, to compare with it
MAX_EPS = 1.0  # a larger ε than this allows any image at all
ATTACK_BATCH = 500  # images attacked at once by robust_accuracy(): the memory of an attack step's gradient stays small

# Captum says so each time an input did not ask for gradients already; it asks for them itself, as it should.
warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients", module="captum")


class Normalize(nn.Module):
    """Pixels 0..1 -> the normalised input the net was trained on."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def on_pixels(model, ckpt):
    """A copy of `model` that takes [N, 1, 28, 28] pixels in 0..1, ready for gradients with respect to them.

    A copy, so that the caller's model is unchanged: its in-place ReLUs are made ordinary (Grad-CAM keeps
    a layer's input or output, which an in-place operation after it would overwrite), and its weights stop
    asking for gradients (only the input's are needed: less work in every backward pass).
    """
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    norm = ckpt.get("normalization", {})
    return nn.Sequential(Normalize(norm.get("mean", MEAN), norm.get("std", STD)), model).eval()


def grad_cam_layer(model):
    """Grad-CAM's layer: (module, whether its input is meant), or (None, False) for a net without conv layers.

    The feature maps of the last conv block as they enter the dense layers, i.e. the input of the first
    nn.Flatten after the last conv (cnn: 64 maps of 3x3, after the last pool and ReLU). Grad-CAM needs maps
    that have been through their ReLU, and gradients that reach every position: tried on the last conv's
    own output (7x7, before its pool and ReLU), cnn's maps came out negative over the ink for the digit
    read, since its max-pool passes gradients to one position in four. Modules are listed in the order
    they are defined, which for every net in net.py is the order they run.
    """
    modules = list(model.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if not convs:
        return None, False
    flatten = [m for m in modules[convs[-1] :] if isinstance(m, nn.Flatten)]
    return (flatten[0], True) if flatten else (modules[convs[-1]], False)


def as_batch(pixels, device):
    """[28, 28], [N, 28, 28] or [N, 1, 28, 28] pixels -> a float [N, 1, 28, 28] batch on `device`."""
    return pixels.float().reshape(-1, 1, 28, 28).to(device)


def as_target(target, device):
    """A digit for every image (an int), or one per image (a tensor, moved to the net's device)."""
    return target.to(device) if torch.is_tensor(target) else target


class Explainer:
    """One network's attributions and attacks. Not for several threads at once (Grad-CAM hooks a layer
    while it runs): draw.py gives each of its workers an Explainer of its own."""

    def __init__(self, model, ckpt):
        self.net = on_pixels(model, ckpt)
        self.device = next(self.net.parameters()).device
        self.ig = IntegratedGradients(self.net)
        self.layer, self.layer_input = grad_cam_layer(self.net)
        self.gradcam = LayerGradCam(self.net, self.layer) if self.layer is not None else None
        # The loss that FGSM and PGD climb: cross-entropy of the logits (Captum's default, -log of the
        # output, is meant for probabilities). Per image, so that each image in a batch gets its own step.
        loss = nn.CrossEntropyLoss(reduction="none")
        self.fgsm = FGSM(self.net, loss, lower_bound=0.0, upper_bound=1.0)
        self.pgd = PGD(self.net, loss, lower_bound=0.0, upper_bound=1.0)
        # Captum leaves a pixel alone where |gradient| < 1e-6; a confident net's gradients are often that
        # small, and the tutorial moves every pixel whose gradient is not exactly 0: so do we.
        self.fgsm.zero_thresh = self.pgd.fgsm.zero_thresh = 0.0

    @torch.no_grad()
    def logits(self, pixels):
        return self.net(as_batch(pixels, self.device))

    def integrated_gradients(self, pixels, target):
        """[N, 28, 28] signed maps: each pixel's share of `target`'s logit (a digit, or one per image)."""
        x = as_batch(pixels, self.device)
        maps = self.ig.attribute(
            x,
            baselines=torch.zeros_like(x),
            target=as_target(target, self.device),
            n_steps=IG_STEPS,
            internal_batch_size=512,
        )  # 512 images at a time: bounded memory
        return maps.detach()[:, 0]

    def grad_cam(self, pixels, target, upsample=True):
        """[N, 28, 28] signed maps, spread bilinearly from the layer's size (with upsample=False: at that
        size), or None for a net without conv layers."""
        if self.gradcam is None:
            return None
        maps = self.gradcam.attribute(
            as_batch(pixels, self.device),
            target=as_target(target, self.device),
            attribute_to_layer_input=self.layer_input,
        ).detach()
        return (LayerAttribution.interpolate(maps, (28, 28), interpolate_mode="bilinear") if upsample else maps)[:, 0]

    def attack(self, pixels, eps, label, target=None, method="pgd"):
        """The pixels changed by at most `eps` each (clamped to 0..1): away from `label` when `target` is
        None ("any other digit"), else towards `target`. Returns [N, 1, 28, 28] pixels."""
        x = as_batch(pixels, self.device)
        if eps == 0:
            return x.clone()
        goal, targeted = (label, False) if target is None else (target, True)
        goal = torch.as_tensor(goal, device=self.device).expand(len(x))  # one digit per image, as the loss wants
        with torch.enable_grad():  # callers may run under no_grad: attacks need the input's gradient
            if method == "fgsm":
                out = self.fgsm.perturb(x, eps, goal, targeted=targeted)
            else:
                out = self.pgd.perturb(
                    x, radius=eps, step_size=2.5 * eps / PGD_STEPS, step_num=PGD_STEPS, target=goal, targeted=targeted
                )
        return out.detach()


def robust_accuracy(explainer, pixels, labels, eps_list=EPSILONS, methods=("fgsm", "pgd"), progress=None):
    """{method: [accuracy at each ε]}: the share of images read right before and after the attack.

    As in PyTorch's FGSM tutorial, an image counts as right only if the net read it right before the
    attack too (at ε = 0 this is the plain accuracy). `pixels` [N, 28, 28] in 0..1, `labels` [N].
    """
    result = {}
    for method in methods:
        correct = [0] * len(eps_list)
        for i in range(0, len(labels), ATTACK_BATCH):
            x, y = (
                as_batch(pixels[i : i + ATTACK_BATCH], explainer.device),
                labels[i : i + ATTACK_BATCH].to(explainer.device),
            )
            right = explainer.logits(x).argmax(1) == y
            for k, eps in enumerate(eps_list):
                attacked = explainer.attack(x, eps, y, method=method)
                correct[k] += int((right & (explainer.logits(attacked).argmax(1) == y)).sum())
            if progress:
                progress(len(y))  # images done, of this method
        result[method] = [c / max(len(labels), 1) for c in correct]
    return result


def why_items(explainer, pixels, read, other, captions):
    """What pictures.maps_picture() draws for each digit: the image the net got, why it read `read` and
    why not `other` (the true digit, or the runner-up) by Integrated Gradients, and Grad-CAM for `read`
    when the net has a conv layer. `pixels` [N, 28, 28] in 0..1; `read`, `other` [N] digits."""
    why, why_not = (explainer.integrated_gradients(pixels, t).cpu() for t in (read, other))
    cam = explainer.grad_cam(pixels, read)
    items = []
    for i, caption in enumerate(captions):
        r, o, x = int(read[i]), int(other[i]), pixels[i]
        tiles = [("seen", x, None), (f"why {r}", x, why[i]), (f"why not {o}", x, why_not[i])]
        if cam is not None:
            tiles.append((f"Grad-CAM {r}", x, cam[i].cpu()))
        items.append((caption, tiles))
    return items
