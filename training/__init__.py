"""Training and evaluation: datasets of decoded clips, the moving-shapes generator, losses, metrics.

`python -m training.train` and `python -m training.evaluate` are the commands; may import model/ and video/.
"""
