"""Where the kit keeps what it builds on the user's machine.

A module of its own, importing nothing from the kit, because both the data pipeline (its decoded-image caches) and
the kernels (the compiled depthwise loop) write there, and the kernels must not depend on the data module.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/convmixer_lit`, else `~/.cache/convmixer_lit`: the user's cache, never the data folder (which
    may be shared or read-only). The fast pipeline's caches and the compiled kernel go there unless told otherwise."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "convmixer_lit"
