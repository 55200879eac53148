"""Files -> frames: decoding (decord, PyAV fallback), probing, frame sampling, annotation files.

Imports nothing else from the project: training/, precompute/ and app/ all read videos through here.
"""
