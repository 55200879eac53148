"""The Gradio app: search a video library by text, describe an uploaded video (see app.ui).

Modules: config (settings from flags/env), startup (which model and library, with fallbacks),
engine (search/describe with input checks, no UI), render (plots drawn with PIL), ui (the page),
main (the entry point behind app.py), testing (helpers for the tests and bench/load.py).
Importing this package is cheap.
"""
