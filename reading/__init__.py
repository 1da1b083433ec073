"""Reading handwriting that is not MNIST's: photos, drawings and pages of digits (predict.py, draw.py,
test.py --images, train_reader.py, bench.py --pages). It uses the lesson's machinery (lab/), never the reverse:

    images       your own digit images made MNIST-like
    pages        every digit on a page, in reading order: found, cut apart, each made MNIST-like by images
    reader       the reader of touching digits: a small CRNN that says how many digits a piece of ink holds, and which
    sheets       pages of MNIST test digits as a phone photographs them, and their scoring (bench.py --pages)
"""
