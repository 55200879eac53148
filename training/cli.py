"""Command-line flags generated from a config dataclass: each flag's meaning and default stated once.

A field's help is `field(metadata={"help": ...})`; the default shown is the dataclass default.
Booleans get --flag / --no-flag, tuples take their length of values.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (defaults None, so callers can tell what was given)."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        val = getattr(defaults, f.name)
        shown = " ".join(map(str, val)) if isinstance(val, tuple) else val
        text = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
        if isinstance(val, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif isinstance(val, tuple):
            parser.add_argument(flag, dest=f.name, type=type(val[0]), nargs=len(val), default=None, help=text)
        else:
            typ = int if isinstance(val, int) else float if isinstance(val, float) else str
            parser.add_argument(flag, dest=f.name, type=typ, default=None, help=text,
                                choices=f.metadata.get("choices"))


def values(cls: type, given: dict[str, Any], base: dict[str, Any] | None = None) -> Any:
    """An instance of `cls`: its defaults, then `base` (a preset), then the flags that were given."""
    out = dataclasses.asdict(cls())
    out.update(base or {})
    out.update({k: v for k, v in given.items() if k in out and v is not None})
    for f in dataclasses.fields(cls):
        if isinstance(out[f.name], list) and isinstance(getattr(cls(), f.name), tuple):
            out[f.name] = tuple(out[f.name])
    return cls(**out)
