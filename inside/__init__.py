"""Looking inside a trained net (draw.py's page, test.py --explain and --attack, predict.py --explain).
It uses the lesson's machinery (lab/), never the reverse:

    explain      why the net reads a digit (attribution maps) and how little change fools it (attacks)
    layers       what each layer computes (feature maps, dense activations) and its layers' names, for draw.py's page
    pictures     attribution maps drawn over their digits (test.py --report, predict.py --explain)
"""
