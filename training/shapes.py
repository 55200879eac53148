"""Moving-shapes clips: a generated dataset whose captions depend on time order.

"a red circle moves left" and "a red circle moves right" show the same frames in opposite order,
so a model that averages independently encoded frames cannot tell them apart, while Prompt Switch
(frame-position prompts exchanged between frames) can. Made for a tiny model at 32-48 px:
plain dark background, saturated colours, large shapes (half-size 14-20% of the short side) and
large motions (translations travel 64% of the frame; sizes change 3x).

Time runs over t in [0, 1]; internally every motion is a function of u = (2t - 1) * direction, so
the time reversal of a clip is the same clip with every direction negated, and rendering it at the
default times gives exactly the reversed frames (negating a float is exact).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from model.files import atomic_save, atomic_write_text

__all__ = [
    "COLORS", "SHAPES", "MOTIONS", "REVERSE", "TRANSLATIONS", "SCALINGS", "VISIBILITY",
    "ShapeSpec", "ClipSpec", "random_clip", "render", "parse_caption", "parse_caption_all",
    "make_batch", "write_dataset", "load_specs", "default_times",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 255),
    "yellow": (240, 220, 40),
    "white": (235, 235, 235),
    "purple": (170, 60, 220),
}
SHAPES = ("circle", "square", "triangle")
TRANSLATIONS = ("moves left", "moves right", "moves up", "moves down")
SCALINGS = ("grows", "shrinks")
VISIBILITY = ("appears", "disappears")
MOTIONS = TRANSLATIONS + SCALINGS + VISIBILITY
REVERSE = {
    "moves left": "moves right", "moves right": "moves left",
    "moves up": "moves down", "moves down": "moves up",
    "grows": "shrinks", "shrinks": "grows",
    "appears": "disappears", "disappears": "appears",
}
# motion -> (kind, direction): u = s * direction, s = 2t - 1 runs from -1 to 1.
_MOTION = {
    "moves left": ("x", -1.0), "moves right": ("x", 1.0),
    "moves up": ("y", -1.0), "moves down": ("y", 1.0),  # image y grows downwards
    "grows": ("size", 1.0), "shrinks": ("size", -1.0),
    "appears": ("alpha", 1.0), "disappears": ("alpha", -1.0),
}
TRAVEL = 0.32  # half of the distance travelled, as a fraction of the frame width/height
SIZE_RANGE = (0.14, 0.20)  # half-size as a fraction of the short side
SCALE_SWING = 0.5  # grows: size * (1 + 0.5 u), i.e. from 0.5x to 1.5x
FADE_WIDTH = 0.4  # appears: opacity ramps over this much of u (20% of the clip)

# Phrasings, canonical first: phrasing i = _SUBJECTS[i % 2] + _VERBS[motion][i].
_VERBS = {
    "moves left": ["moves left", "slides to the left", "travels left", "goes to the left"],
    "moves right": ["moves right", "slides to the right", "travels right", "goes to the right"],
    "moves up": ["moves up", "rises", "travels upward", "goes up"],
    "moves down": ["moves down", "falls", "travels downward", "goes down"],
    "grows": ["grows", "gets bigger", "expands", "becomes larger"],
    "shrinks": ["shrinks", "gets smaller", "contracts", "becomes smaller"],
    "appears": ["appears", "fades in", "comes into view", "shows up"],
    "disappears": ["disappears", "fades out", "vanishes", "goes out of view"],
}
_SUBJECTS = ["a {c} {s}", "the {c} {s}"]
_SHAPE_WORDS = {"circle": ("circle", "disc", "disk", "ball"), "square": ("square", "box", "block"),
                "triangle": ("triangle",)}
NUM_PHRASINGS = 4


@dataclass(frozen=True)
class ShapeSpec:
    """One shape: its look, its motion and where it sits at mid-clip (t = 0.5)."""

    color: str
    shape: str
    motion: str
    size: float  # half-size at mid-clip, fraction of the frame's short side
    center: tuple[float, float]  # (x, y) at mid-clip, fractions of width/height
    fade_at: float = 0.0  # appears/disappears: u at which opacity is 0.5, in [-0.4, 0.4]

    def reversed(self) -> ShapeSpec:
        return replace(self, motion=REVERSE[self.motion])

    def phrase(self, i: int = 0) -> str:
        subject = _SUBJECTS[i % len(_SUBJECTS)].format(c=self.color, s=self.shape)
        return f"{subject} {_VERBS[self.motion][i % NUM_PHRASINGS]}"


@dataclass(frozen=True)
class ClipSpec:
    """A clip: shapes drawn in order over a plain background (RGB)."""

    shapes: tuple[ShapeSpec, ...]
    background: tuple[int, int, int] = (16, 16, 16)

    def caption(self) -> str:
        """Canonical caption, e.g. "a red circle moves left and a blue square grows"."""
        return self.phrasing(0)

    def phrasing(self, i: int) -> str:
        return " and ".join(s.phrase(i) for s in self.shapes)

    def captions(self) -> list[str]:
        """All phrasings, canonical first, deterministic and distinct."""
        out: list[str] = []
        for i in range(NUM_PHRASINGS):
            c = self.phrasing(i)
            if c not in out:
                out.append(c)
        return out

    def reversed(self) -> ClipSpec:
        """The time reversal: renders exactly the frames of self in reverse order."""
        return ClipSpec(tuple(s.reversed() for s in self.shapes), self.background)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpec:
        """Inverse of to_dict (JSON turns tuples into lists)."""
        shapes = tuple(ShapeSpec(**{**s, "center": tuple(s["center"])}) for s in d["shapes"])
        return cls(shapes, tuple(d["background"]))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# sampling clips


def _random_shape(rng: np.random.Generator, motions: Sequence[str], color=None, shape=None) -> ShapeSpec:
    color = color or str(rng.choice(list(COLORS)))
    shape = shape or str(rng.choice(SHAPES))
    motion = str(rng.choice(list(motions)))
    size = float(rng.uniform(*SIZE_RANGE))
    kind, _ = _MOTION[motion]
    along = float(rng.uniform(0.45, 0.55))  # axis of travel: centred so both ends stay inside
    across = float(rng.uniform(0.3, 0.7))
    if kind == "x":
        center = (along, across)
    elif kind == "y":
        center = (across, along)
    else:
        center = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)))
    fade_at = float(rng.uniform(-0.4, 0.4)) if kind == "alpha" else 0.0
    return ShapeSpec(color, shape, motion, round(size, 4), (round(center[0], 4), round(center[1], 4)),
                     round(fade_at, 4))


def random_clip(rng: np.random.Generator, max_shapes: int = 1, motions: Sequence[str] = MOTIONS) -> ClipSpec:
    """A random clip of 1..max_shapes shapes; shapes of one clip differ in colour or shape."""
    if max_shapes < 1:
        raise ValueError("max_shapes must be >= 1")
    unknown = set(motions) - set(MOTIONS)
    if unknown or not motions:
        raise ValueError(f"unknown motions {sorted(unknown)}; choose from {MOTIONS}")
    n = int(rng.integers(1, max_shapes + 1))
    shapes: list[ShapeSpec] = []
    while len(shapes) < n:
        s = _random_shape(rng, motions)
        if all((s.color, s.shape) != (o.color, o.shape) for o in shapes):
            shapes.append(s)
    level = int(rng.integers(0, 33))
    tint = rng.integers(-6, 7, size=3)
    background = tuple(int(np.clip(level + d, 0, 40)) for d in tint)
    return ClipSpec(tuple(shapes), background)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# rendering


def default_times(num_frames: int) -> np.ndarray:
    """Evenly spaced t in [0, 1], first and last frame included (t = 0.5 for one frame)."""
    if num_frames == 1:
        return np.array([0.5])
    return np.arange(num_frames) / (num_frames - 1)


def _default_s(num_frames: int) -> np.ndarray:
    # s = 2t - 1 from integers, so s[T-1-i] == -s[i] exactly (what makes reversal exact).
    if num_frames == 1:
        return np.zeros(1)
    return (2.0 * np.arange(num_frames) - (num_frames - 1)) / (num_frames - 1)


def _coverage(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Anti-aliased pixel coverage in [0, 1]; dx, dy, r in pixels, broadcast [T, H, W]."""
    if shape == "circle":
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - 0.9 * r  # 0.9: about the area of the circle
    elif shape == "triangle":  # equilateral, apex up, circumradius 1.3 r
        a = np.abs(dx) * 0.8660254 - 0.5 * dy
        d = np.maximum(dy, a) - 0.65 * r
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - d, 0.0, 1.0)


def render(
    spec: ClipSpec,
    num_frames: int,
    size: int | tuple[int, int],
    times: Sequence[float] | None = None,
) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] of a clip; size is (width, height) or one int for square.

    times: positions t in [0, 1] of the frames (default: evenly spaced, both ends included).
    """
    w, h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if times is None:
        s = _default_s(num_frames)
    else:
        s = 2.0 * np.asarray(times, dtype=np.float64) - 1.0
        if s.shape != (num_frames,):
            raise ValueError(f"got {s.size} times for num_frames={num_frames}")
    short = float(min(w, h))
    px = np.arange(w, dtype=np.float32) + 0.5  # pixel centres
    py = np.arange(h, dtype=np.float32) + 0.5
    out = np.broadcast_to(np.asarray(spec.background, np.float32), (num_frames, h, w, 3)).copy()
    for sh in spec.shapes:
        kind, direction = _MOTION[sh.motion]
        u = s * direction
        cx = np.full(num_frames, sh.center[0])
        cy = np.full(num_frames, sh.center[1])
        r = np.full(num_frames, sh.size)
        alpha = np.ones(num_frames)
        if kind == "x":
            cx = cx + TRAVEL * u
        elif kind == "y":
            cy = cy + TRAVEL * u
        elif kind == "size":
            r = r * (1.0 + SCALE_SWING * u)
        else:
            alpha = np.clip((u - sh.fade_at) / FADE_WIDTH + 0.5, 0.0, 1.0)
        dx = px[None, None, :] - (cx * w).astype(np.float32)[:, None, None]
        dy = py[None, :, None] - (cy * h).astype(np.float32)[:, None, None]
        rr = (r * short).astype(np.float32)[:, None, None]
        cov = _coverage(sh.shape, dx, dy, rr) * alpha.astype(np.float32)[:, None, None]
        color = np.asarray(COLORS[sh.color], np.float32)
        cov = cov[..., None]
        out += cov * (color - out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# captions


_MOTION_PATTERNS: list[tuple[str, re.Pattern]] = [  # checked in order: "disappears" before "appears"
    ("disappears", re.compile(r"disappear|vanish|fad(?:e|es|ing) out|out of (?:view|sight)")),
    ("appears", re.compile(r"appear|fad(?:e|es|ing) in\b|into view|shows? up|pops? (?:up|in)")),
    ("grows", re.compile(r"\bgrow|bigger|larger|expand|enlarg")),
    ("shrinks", re.compile(r"shrink|smaller|contract")),
    ("moves left", re.compile(r"\bleft")),
    ("moves right", re.compile(r"\bright")),
    ("moves up", re.compile(r"\bup(?:ward|wards)?\b|\bris(?:e|es|ing)\b|\bascend|\braise")),
    ("moves down", re.compile(r"\bdown(?:ward|wards)?\b|\bfall|\bsink|\bdescend|\bdrop")),
]
_COLOR_RE = re.compile(r"\b(" + "|".join(COLORS) + r")\b")
_SHAPE_RE = {name: re.compile(r"\b(?:" + "|".join(words) + r")s?\b") for name, words in _SHAPE_WORDS.items()}


def _parse_clause(text: str) -> tuple[str | None, str | None, str | None]:
    m = _COLOR_RE.search(text)
    color = m.group(1) if m else None
    found = [(p.search(text).start(), name) for name, p in _SHAPE_RE.items() if p.search(text)]
    shape = min(found)[1] if found else None
    motion = next((name for name, p in _MOTION_PATTERNS if p.search(text)), None)
    return color, shape, motion


def parse_caption_all(text: str) -> list[tuple[str | None, str | None, str | None]]:
    """(colour, shape, motion) for each clause ("... and ...") of a caption."""
    text = " ".join(text.lower().replace(".", " ").split())
    clauses = [c for c in re.split(r"\band\b|,|;|\bwhile\b", text) if c.strip()]
    return [_parse_clause(c) for c in clauses] or [(None, None, None)]


def parse_caption(text: str) -> tuple[str | None, str | None, str | None]:
    """(colour, shape, motion) of the first shape named in any phrasing; None where not found."""
    return parse_caption_all(text)[0]


# --------------------------------------------------------------------------------------------
# in-memory batches and the on-disk dataset


def make_batch(
    rng: np.random.Generator,
    batch_size: int,
    num_frames: int,
    size: int | tuple[int, int],
    distinct_captions: bool = True,
    *,
    max_shapes: int = 1,
    motions: Sequence[str] = MOTIONS,
    num_segments: int | None = None,
    train: bool = False,
) -> tuple[np.ndarray, list[str], list[ClipSpec]]:
    """Fresh clips for one training/eval step: (frames uint8 [B, T, H, W, 3], captions, specs).

    Captions (a random phrasing per clip) have distinct canonical forms within the batch when
    distinct_captions, so no two clips in a batch are positives for each other's text.
    Frames are at the default times; with num_segments they are sampled like a video
    (video.sampling.sample_times: chunk-major, random per segment when train).
    """
    specs: list[ClipSpec] = []
    seen: set[str] = set()
    tries = 0
    while len(specs) < batch_size:
        tries += 1
        if tries > 100 * batch_size + 1000:
            raise ValueError(f"cannot draw {batch_size} clips with distinct captions from these motions/shapes")
        spec = random_clip(rng, max_shapes=max_shapes, motions=motions)
        key = spec.caption()
        if distinct_captions and key in seen:
            continue
        seen.add(key)
        specs.append(spec)
    captions = [sp.phrasing(int(rng.integers(NUM_PHRASINGS))) for sp in specs]
    if num_segments is None:
        frames = np.stack([render(sp, num_frames, size) for sp in specs])
    else:
        from video.sampling import sample_times

        frames = np.stack([
            render(sp, num_frames, size, times=sample_times(num_frames, num_segments, train=train, rng=rng))
            for sp in specs
        ])
    return frames, captions, specs


_MANIFEST = "shapes_manifest.json"


def write_dataset(
    root: Path,
    *,
    seed: int = 0,
    num_train: int = 200,
    num_test: int = 50,
    size: int | tuple[int, int] = (160, 120),
    seconds: float = 2.0,
    fps: int = 12,
    max_shapes: int = 1,
) -> Path:
    """Write H.264 videos and MSR-VTT-style annotations under root; returns root.

    Layout: videos/shapes0000.mp4 ..., MSRVTT_data.json (every phrasing of every clip),
    MSRVTT_train.9k.csv (train ids), MSRVTT_JSFUSION_test.csv (one canonical caption per test video),
    and shapes_manifest.json (the arguments and clip specs). Train clips come from rng stream
    (seed, 0) and test clips from (seed, 1), so changing num_train leaves the test clips alone.
    Idempotent: with the same arguments, existing videos are kept.
    """
    from video.decode import write_video

    root = Path(root)
    video_dir = root / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    json_size = size if isinstance(size, int) else [int(v) for v in size]
    args = dict(seed=seed, num_train=num_train, num_test=num_test, size=json_size,
                seconds=seconds, fps=fps, max_shapes=max_shapes)
    manifest_path = root / _MANIFEST
    reuse = False
    if manifest_path.exists():
        try:
            reuse = json.loads(manifest_path.read_text())["args"] == args
        except (ValueError, KeyError):
            reuse = False
    if not reuse and manifest_path.exists():
        manifest_path.unlink()  # arguments changed: any video may be stale

    train_rng = np.random.default_rng([seed, 0])
    test_rng = np.random.default_rng([seed, 1])
    specs = [random_clip(train_rng, max_shapes) for _ in range(num_train)]
    specs += [random_clip(test_rng, max_shapes) for _ in range(num_test)]
    ids = [f"shapes{i:04d}" for i in range(len(specs))]
    num_frames = max(1, int(round(seconds * fps)))

    for vid, spec in zip(ids, specs):
        out = video_dir / f"{vid}.mp4"
        if reuse and out.exists() and out.stat().st_size > 0:
            continue
        frames = render(spec, num_frames, size)
        atomic_save(out, lambda tmp, frames=frames: write_video(tmp, frames, fps), suffix=".mp4")

    data = {
        "info": {"description": "moving-shapes, generated by training.shapes.write_dataset", **args},
        "videos": [{"video_id": vid, "split": "train" if i < num_train else "test", "id": i}
                   for i, vid in enumerate(ids)],
        "sentences": [{"caption": cap, "video_id": vid, "sen_id": 0}
                      for vid, spec in zip(ids, specs) for cap in spec.captions()],
    }
    for n, sent in enumerate(data["sentences"]):
        sent["sen_id"] = n
    atomic_write_text(root / "MSRVTT_data.json", json.dumps(data, indent=1))
    atomic_write_text(root / "MSRVTT_train.9k.csv", _csv([["video_id"]] + [[vid] for vid in ids[:num_train]]))
    test_rows = [[f"ret{k}", f"msr{num_train + k}", vid, spec.caption()]
                 for k, (vid, spec) in enumerate(zip(ids[num_train:], specs[num_train:]))]
    atomic_write_text(root / "MSRVTT_JSFUSION_test.csv", _csv([["key", "vid_key", "video_id", "sentence"]] + test_rows))
    manifest = {"args": args, "clips": {vid: spec.to_dict() for vid, spec in zip(ids, specs)}}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))  # written last: marks completion
    return root


def load_specs(root: Path) -> dict[str, ClipSpec]:
    """video_id -> ClipSpec of a dataset written by write_dataset (for reversal tests on disk)."""
    manifest = json.loads((Path(root) / _MANIFEST).read_text())
    return {vid: ClipSpec.from_dict(d) for vid, d in manifest["clips"].items()}


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
