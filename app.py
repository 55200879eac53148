"""Prompt Switch video search: the Gradio app (also the Hugging Face Space entry point).

    python app.py [--model SPEC] [--library DIR | hf-hub:org/dataset[@rev]] [--videos DIR] [--host H] [--port P]

Settings also come from PROMPTSWITCH_MODEL, PROMPTSWITCH_LIBRARY and PROMPTSWITCH_VIDEOS; see
`python app.py --help`.
"""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
