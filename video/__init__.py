"""Files -> frames: decoding (decord, PyAV fallback) with limits for untrusted files, probing, frame
sampling, annotation files, the one video-extension list (files), and the one time-order helper and
strip renderer for sampled frames (frames).

Imports nothing else from the project: training/, precompute/ and app/ all read videos through here.
"""
