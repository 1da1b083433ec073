"""The lesson's machinery: what train.py and test.py use to train a net and measure it, one job each.
The scripts at the top (net.py, train.py, test.py, ...) are what you run and read first. Reading your own
handwriting lives in reading/, looking inside a net in inside/; nothing here imports either:

    cli          one-line errors, the number types of the flags, the flags every script shares, tables
    device       cuda -> mps -> cpu, mixed precision, threads
    settings     train.py's flags: the one list of settings, and what is derived from it
    data         MNIST as tensors: download or copy, split, normalise, batches
    augment      every training batch changed a little at random: shifts, rotations, elastic bends, pens, resolution
    checkpoint   net.pth: the best model, saved atomically, loaded with weights_only=True
    ensemble     several checkpoints read as one net: the mean of their probabilities
    runs         a run's life: its folder, new or resumed, last.pt, what it says at the end
    progress     what train.py shows while an epoch runs
    metrics      evaluation and the confusion matrix
    calibration  probabilities that mean what they say: a temperature fitted on validation, and the ECE
    figures      the pictures: confusion matrix, digits with what the net read
    board        what TensorBoard shows besides the curves
    distributed  the few steps that differ under torchrun
    files        writing files so that a full disk or Ctrl-C never leaves half a file
"""
