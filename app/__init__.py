"""The Gradio app: search a video library by text, describe an uploaded video (see app.ui).

Modules: config (settings from flags/env, the limits), startup (which model and library, with fallbacks),
engine (search/describe with input checks, no UI), pages (every text the page shows, pure functions),
render (plots drawn with PIL), handlers (what each event does), ui (the page, built per tab), gpu (ZeroGPU),
network (the Hub reachability probe), main (the entry point behind app.py); media (the library's files
served by key, and their URLs), components (Gradio components that take those URLs as they are),
tokens (a query tokenized once), batcher (concurrent queries encoded together), isolation (uploads
decoded in a process with limits), moments, progress, mcp (the JSON API and MCP tools).
Importing this package is cheap.
"""
