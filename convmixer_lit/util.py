"""Small helpers shared by modules that cannot import each other (cli imports checkpoint)."""

from __future__ import annotations

import importlib


def import_class(class_path: str):
    """`package.module.Name` -> the object `Name` of that module.

    Raises ImportError (no such module), AttributeError (no such name) or ValueError (not a dotted path); each
    caller words its own error.
    """
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)
