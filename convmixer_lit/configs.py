"""Layered config files: a preset folder's `_base.yaml` holds the recipe its configs share, each config only what
differs (`model: {init_args: {stem: patch, mixer: conv}}`).

`fit --config experiments/mixer-study/patch-conv.yaml` reads `_base.yaml` first and the file on top of it (as two
`--config` flags would: mappings merge key by key, anything else is replaced), and a study records the merged
config, so "the same settings" means the same merged recipe however it is split across files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BASE_CONFIG = "_base.yaml"


def base_of(path: Path) -> Path | None:
    """The `_base.yaml` a config file is layered on (its own folder's), or None."""
    base = path.parent / BASE_CONFIG
    return base if path.name != BASE_CONFIG and base.is_file() else None


def deep_merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`: mappings merge recursively, any other value (lists included) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return over


def load_layered(path: Path) -> Any:
    """A config file merged over its `_base.yaml` (where it has one). Raises OSError / yaml.YAMLError."""
    config = yaml.safe_load(path.read_text())
    base = base_of(path)
    return deep_merge(yaml.safe_load(base.read_text()) or {}, config or {}) if base else config


def with_base_configs(argv: list[str]) -> list[str]:
    """`--config cell.yaml` -> `--config _base.yaml --config cell.yaml` where the cell's folder has a base. Each base
    goes in once, before the first config of its folder: `--config long.yaml --config lr0.001.yaml` from one preset
    is the base, then one arm, then the other on top (a second copy of the base would undo the first arm)."""
    out: list[str] = []
    added: set[Path] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        joined = next((arg.split("=", 1)[1] for flag in ("--config=", "-c=") if arg.startswith(flag)), None)
        value = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else joined
        base = base_of(Path(value)) if value and Path(value).is_file() else None
        if base is not None and base.resolve() not in added:
            added.add(base.resolve())
            out += ["--config", str(base)]
        out.append(arg)
        if arg in ("--config", "-c") and value is not None:
            out.append(value)
            i += 1
        i += 1
    return out
