"""The lab's machinery. The scripts at the top (net.py, train.py, test.py, ...) are what you run
and read first; these modules are what they share, one job each:

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
    images       your own digit images made MNIST-like (predict.py, draw.py)
    pages        every digit on a page, in reading order: found, cut apart, each made MNIST-like by images
    reader       the reader of touching digits: a small CRNN that says how many digits a piece of ink holds, and which
    sheets       pages of MNIST test digits as a phone photographs them, and their scoring (bench.py --pages)
    explain      why the net reads a digit (attribution maps) and how little change fools it (attacks)
    files        writing files so that a full disk or Ctrl-C never leaves half a file
"""
