"""A tiny generated library for the app's tests: moving-shapes clips indexed with a given model."""
from __future__ import annotations

from pathlib import Path


def make_shapes_library(root: Path, model="random:tiny", num: int = 6, seconds: float = 2.0) -> tuple[Path, Path]:
    """Generate `num` moving-shapes clips under root/data and index them into root/library.

    Returns (library folder, folder of the videos). `model` is a spec or a loaded model.
    """
    from precompute import BuildSettings, build_library
    from training.shapes import write_dataset

    root = Path(root)
    data = write_dataset(root / "data", seed=0, num_train=0, num_test=num, size=(96, 72), seconds=seconds, fps=12)
    lib = root / "library"
    report = build_library(data / "MSRVTT_data.json", lib, model, BuildSettings(workers=0, progress_bar=False))
    if report.exit_code != 0:
        raise RuntimeError(f"could not build the test library: {report.summary()}")
    return lib, data / "videos"
