"""Calibration: a probability that means what it says.

A net trained with label smoothing 0.1 learns to give the right digit about 90%, however sure it
could be: on MNIST's test set the default net said 90% on average while it was right 99.5% of the
time. Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") fixes that
after training with one number: the logits are divided by a temperature T, fitted on the validation
set to give its images the highest likelihood. T < 1 sharpens, T > 1 softens. Dividing every logit by
the same positive number never changes which is largest, so the accuracy stays exactly as it was.

    fit_temperature(probabilities, labels)    T, from validation's probabilities (no second pass of the net)
    rescale(probabilities, T)                 the same readings at temperature T
    calibration_error(probabilities, labels)  the expected calibration error (ECE) and its bins
    calibrate(model, T)                       a loaded net that gives calibrated logits from then on
"""

import math

import torch

BINS = 15  # Guo et al.'s number of confidence bins for the ECE


def rescale(probabilities, temperature):
    """softmax(logits / T), from softmax(logits): the log-probabilities are the logits less a constant
    per image, and softmax ignores a constant."""
    if temperature == 1.0:
        return probabilities
    log_p = probabilities.cpu().double().clamp_min(1e-45).log()  # on the host: float64, which MPS lacks
    return torch.log_softmax(log_p / temperature, dim=1).exp().float()


def fit_temperature(probabilities, labels):
    """The temperature that minimises the mean cross-entropy of `probabilities` [N, 10] read at it.

    The loss is convex in 1/T, so a search over log T on a fine grid, then refined, finds its minimum
    (a few milliseconds for 5,000 images; deterministic, unlike an optimiser's stopping rule).
    """
    # On the host, in float64 (which Apple's GPUs lack): evaluate() hands the probabilities over on the CPU.
    log_p = probabilities.cpu().double().clamp_min(1e-45).log()
    labels = labels.cpu()

    def loss(log_t):
        return float(torch.nn.functional.cross_entropy(log_p / math.exp(log_t), labels))

    lo, hi = math.log(0.05), math.log(20.0)
    for _ in range(4):  # each round: 41 points, then the 2 steps around the best
        grid = [lo + (hi - lo) * i / 40 for i in range(41)]
        best = min(range(41), key=lambda i: loss(grid[i]))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, 40)]
    return round(math.exp((lo + hi) / 2), 4)


def calibration_error(probabilities, labels, bins=BINS):
    """The expected calibration error: images grouped by their confidence (the largest probability) into
    `bins` equal ranges, each (low, high]; in each, |accuracy - mean confidence|, weighted by its share of images.

    Returns {"ece", "confidence", "accuracy", "bins": [(low, high, count, confidence, accuracy), ...]}.
    """
    confidence, predicted = probabilities.float().max(dim=1)
    right = (predicted == labels.cpu()).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(confidence, edges[1:-1], right=False)  # bin i: (edges[i], edges[i + 1]], as Guo et al.'s
    table = []
    ece = 0.0
    for i in range(bins):
        inside = which == i
        count = int(inside.sum())
        mean_conf = float(confidence[inside].mean()) if count else 0.0
        acc = float(right[inside].mean()) if count else 0.0
        ece += count / max(len(labels), 1) * abs(acc - mean_conf)
        table.append((float(edges[i]), float(edges[i + 1]), count, mean_conf, acc))
    return {"ece": ece, "confidence": float(confidence.mean()), "accuracy": float(right.mean()), "bins": table}


def calibrate(model, temperature):
    """Make `model` return its logits divided by `temperature`, for every caller (test.py, predict.py,
    draw.py, ensembles, attributions), without changing its weights, layers or state_dict.

    A forward hook, not a scaled last layer: under bf16 a scaled weight would be rounded differently,
    and a net might then read a close call the other way than it did when it was tested. The division
    happens in fp32, after the net, where it cannot change which digit is largest.
    """
    if temperature != 1.0:
        model.register_forward_hook(lambda module, inputs, logits: logits.float() / temperature)
    model.temperature = temperature
    return model


def summary_line(calibration, temperature=None):
    """One line for a terminal: mean confidence against accuracy, and the ECE."""
    at = "" if temperature is None else f" at temperature {temperature:g}"
    return (
        f"Calibration{at}: mean confidence {100 * calibration['confidence']:.2f}% for "
        f"{100 * calibration['accuracy']:.2f}% right, ECE {100 * calibration['ece']:.2f}% ({BINS} bins)"
    )


def at(result, labels, temperature):
    """An evaluation (lab/metrics.evaluate) read at `temperature`: its probabilities rescaled, with the
    temperature and the calibration they give. The predictions, and so the accuracy, stay as they were."""
    probabilities = rescale(result["probabilities"], temperature)
    return {
        **result,
        "probabilities": probabilities,
        "temperature": temperature,
        "calibration": calibration_error(probabilities, labels),
    }
