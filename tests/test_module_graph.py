"""The package's import graph points one way: from the commands down to the library, never back up.

Read from the source (no imports run), so a module that would import upward — the kernels from the data module, a
library module from a command — fails here before it tangles anything. Modules not ranked below (new commands,
study/) count as commands: they may import anything, and nothing ranked may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import convmixer_lit

PACKAGE = Path(convmixer_lit.__file__).parent
NAME = "convmixer_lit"
# a module may import only kit modules of a lower rank: the kernels sit below the data module (ConvMixer's layer must
# not drag the data pipeline in) and the base module (which fuses layers with them), the sources and pipelines below
# the data module that joins them (neither knows the other), every library module below the CLI, the CLI below the
# commands
RANKS = {
    "errors": 0, "paths": 0, "hardware": 0, "stats": 0, "holdout": 0, "configs": 0,
    "kernels": 1, "fastdata": 1, "callbacks": 1, "figures": 1, "images": 1, "pipelines": 1,
    "kernels.precision": 2, "kernels.allocator": 2, "kernels.native": 2, "sources": 2, "pipelines.standard": 2,
    "pipelines.fast": 2,
    "kernels.depthwise": 3, "kernels.gelu_bn": 3, "sources.imagenette": 3, "sources.folder": 3,
    "base": 4, "data": 4,
    "checkpoint": 5, "models.convmixer": 5, "models.vit": 5, "models.resnet": 5, "models.isotropic": 5,
    "models.timm_vit": 5,
    "models": 6, "__init__": 6,
    "cli": 7,
    "fit": 8, "evaluate": 8,
    "predict": 9, "bench": 9,
}
COMMANDS_WITHOUT_THE_CLI = ("evaluate", "predict", "bench")  # fit is the CLI's command


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def is_module(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def kit_imports(path: Path) -> set[str]:
    """The kit modules a file imports (at any depth of the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix(NAME + ".") for a in node.names if a.name.startswith(NAME + ".")}
            found |= {"__init__" for a in node.names if a.name == NAME}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(NAME):
            base = node.module.removeprefix(NAME).removeprefix(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if is_module(sub) else base or "__init__")
    return found


SOURCES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m in RANKS))
def test_no_module_imports_upward(module):
    upward = {m for m in kit_imports(SOURCES[module]) if m != module and RANKS.get(m, 99) >= RANKS[module]}
    assert not upward, f"{module} (rank {RANKS[module]}) imports {sorted(upward)}"


def test_every_ranked_module_exists_and_the_commands_do_not_need_the_cli():
    assert set(RANKS) <= set(SOURCES)
    for command in COMMANDS_WITHOUT_THE_CLI:
        assert "cli" not in kit_imports(SOURCES[command]), command


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds every form of import, so the rule above can fail."""
    source = tmp_path / "m.py"
    source.write_text("import convmixer_lit.data\nfrom convmixer_lit.kernels import precision, switched_off\n"
                      "def f():\n    from convmixer_lit import cli, MODELS\n")
    assert kit_imports(source) == {"data", "kernels.precision", "kernels", "cli", "__init__"}
