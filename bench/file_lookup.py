"""What one gallery image costs the server to look up, by how many files the app serves.

    python bench/file_lookup.py                      # 300, 3,000 and 30,000 served files
    python bench/file_lookup.py --sizes 300,3000

Gradio's check (`is_static_file`, run on every file a handler returns when the served files are set
with `gr.set_static_paths`) resolves the returned path and every listed path, one by one; the app
serves exact files (three per video: thumbnail, poster, video), so the list grows with the library.
`app.media.MediaFiles` (the app's /media route and its links) is a dict lookup. A search returns
10 images by default. The image looked up sits in the middle of the list (Gradio stops at the first
match, so that is its average). Only that file exists; the cost is the resolving.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def per_call(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,3000,30000", help="numbers of served files, comma-separated")
    args = ap.parse_args(argv)
    from gradio.utils import _is_static_file

    from app.media import MediaFiles
    from bench.machine import describe

    with tempfile.TemporaryDirectory() as tmp:
        thumbs = Path(tmp) / "library" / "thumbs"
        thumbs.mkdir(parents=True)
        image = thumbs / "looked-up.jpg"
        image.write_bytes(b"\xff\xd8\xff")
        print(describe())
        print("\n| served files | Gradio static check, ms per image | app.media lookup, ms per image "
              "| one search (10 images), Gradio |")
        print("|---|---|---|---|")
        for n in (int(x) for x in args.sizes.split(",") if x.strip()):
            others = [thumbs / f"{i:06d}.jpg" for i in range(n - 1)]
            files = others[: n // 2] + [image] + others[n // 2:]  # the middle: Gradio stops at a match
            static = [p.resolve() for p in files]
            media = MediaFiles(files)
            g = per_call(lambda: _is_static_file(str(image), static), max(1, 3000 // n))
            m = per_call(lambda: media.url(image, "http://host"), 2000)
            print(f"| {n:,} | {g * 1e3:.1f} | {m * 1e3:.4f} | {g * 10 * 1e3:,.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
