"""Reading handwriting that is not MNIST's: photos, drawings and pages of digits (predict.py, draw.py,
test.py --images, train_reader.py, bench.py --pages). It uses the lesson's machinery (lab/), never the reverse.
An image is read by pages.read(), whose steps run in the order of this list:

    ink          step 1: an image's grey levels and Otsu's threshold; on a page, the ink standing out from its paper
    pieces       steps 2 and 3: connected pieces of ink joined into digits, and the digits into lines
    cutting      step 4: touching digits cut apart where the net (or the reader) reads the parts most surely
    images       image files opened, and one digit made MNIST-like (preprocess): the only way a digit becomes 28x28
    pages        read(): every digit in an image, in reading order, by the steps above; digit_alone(): one digit
    reader       the reader of touching digits: a small CRNN that says how many digits a piece of ink holds, and which
    sheets       handwriting from MNIST digits: photographed sheets (bench.py --pages), pieces for train_reader.py
    pictures     what was read, drawn: a page with its boxes and readings, digits as written beside their 28x28
"""
