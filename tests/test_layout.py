"""The layout as the architecture: each stage imports only what lies below it (ARCHITECTURE.md).

    phyworld (cli, config, storage), phyworld.data  <-  datagen, training  <-  eval  <-  pipeline

Checked on the source (every `import`, at module level or inside a function), so a lazy import
cannot slip an upward arrow past it. `pipeline/` (the study, the quickstart) drives all three
stages and may import any of them; nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("datagen", "training", "eval")
# package -> the top-level packages of this repository it must never import
FORBIDDEN = {
    "phyworld": {"datagen", "training", "eval", "pipeline"},
    "datagen": {"training", "eval", "pipeline"},
    "training": {"datagen", "eval", "pipeline"},  # datasets are read through phyworld.data
    "eval": {"pipeline"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names every import statement of a file names (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_stage_above_it(package: str) -> None:
    wrong = {}
    for path in sources(package):
        rel = path.relative_to(REPO).as_posix()
        if bad := imported_packages(path) & FORBIDDEN[package]:
            wrong[rel] = sorted(bad)
    assert not wrong, f"imports against the layout (see ARCHITECTURE.md): {wrong}"


def test_the_shared_contract_imports_no_stage() -> None:
    """phyworld/data/ is what the stages share: it depends on none of them."""
    paths = sources("phyworld/data")
    assert paths, "phyworld/data/ is missing"
    for path in paths:
        assert not imported_packages(path) & set(STAGES), path


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """A function-level import counts: the rule cannot be dodged by importing late."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from eval.parse import parse_balls\n    import training.vae\n")
    assert imported_packages(module) == {"eval", "training"}
