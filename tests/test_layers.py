"""The tree is the data flow: layering and import hygiene, checked on every test run.

* One import namespace: the stage folders ``pipeline/``, ``flows/`` and ``schemas/`` stay at the
  top of the tree and are imported as ``docvl.pipeline``, ``docvl.flows`` and ``docvl.schemas``
  (links in ``docvl/``), so docvl installs one top-level package and collides with no PyPI project.
* ``lint-imports`` (import-linter, contracts in pyproject.toml): schemas <- pipeline (its stages in
  order) <- flows <- the CLI and API (docvl's own modules), and no import cycle between the modules
  of any package.
* No function-level import of a project module: lazy imports may only defer heavy third-party
  packages (torch, transformers, prefect), never dodge a cycle. The one exception is the app layer
  (``docvl/``): its commands defer the project modules that load those packages
  (:data:`DEFERRABLE`), so ``docvl --help`` and usage errors come before Prefect or a model loads.
  import-linter still sees those imports, so they cannot hide a cycle.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from docvl import api

REPO = Path(__file__).resolve().parent.parent
#: The source folders: the app layer (``docvl/``) and the stages it links as subpackages.
PACKAGES = ("docvl", "flows", "pipeline", "schemas")
STAGES = PACKAGES[1:]


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is a dev dependency"
    done = subprocess.run(
        [exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout


def test_import_contracts_hold() -> None:
    out = _lint_imports()
    assert "3 kept, 0 broken" in out, out


def nested_project_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module that is not at module level. Imports
    under a module-level ``if TYPE_CHECKING:`` count as module level (they never run)."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            top |= {id(child) for child in node.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            found += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return found


def test_stages_are_subpackages_of_docvl() -> None:
    for stage in STAGES:
        link = REPO / "docvl" / stage
        assert link.is_symlink() and link.resolve() == REPO / stage, stage
        module = __import__(f"docvl.{stage}", fromlist=["_"])
        assert Path(module.__file__ or "").resolve().parent == REPO / stage


def source_files() -> list[Path]:
    folders = (*PACKAGES, "tests", "bench", "scripts")
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def top_level_stage_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a stage under its old top-level name (``pipeline.x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in STAGES]
    return found


def test_stages_are_imported_only_under_docvl() -> None:
    assert top_level_stage_imports("from pipeline.errors import X\nimport flows\n") == [
        (1, "pipeline.errors"),
        (2, "flows"),
    ]
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in source_files()
        for line, module in top_level_stage_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_app_layer_lists_every_app_module() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "packages")
    app = {name.strip() for name in contract["layers"][0].split(":")}
    modules = {p.stem for p in (REPO / "docvl").glob("*.py") if p.stem != "__init__"}
    assert app == modules
    assert contract["layers"][1:] == list(STAGES)


def test_finder_sees_nested_project_imports() -> None:
    source = "import os\n\ndef f():\n    from docvl.pipeline.errors import DocvlError\n"
    assert nested_project_imports(source) == [(4, "docvl.pipeline.errors")]
    typing_only = "if TYPE_CHECKING:\n    from docvl.pipeline.engine.core import Engine\n"
    assert nested_project_imports(typing_only) == []
    assert nested_project_imports("if x:\n    import docvl.flows\n") == [(2, "docvl.flows")]


#: Project modules that import Prefect, torch, transformers, the model backends or the renderer at
#: module level: the CLI (``docvl/``) may import them inside a command.
DEFERRABLE = (
    "docvl.api",
    "docvl.review",
    "docvl.flows.analyze",
    "docvl.flows.inbox",
    "docvl.pipeline.dev",
    "docvl.pipeline.engine",
    "docvl.pipeline.model",
)


def deferrable(path: Path, module: str) -> bool:
    in_app = path.relative_to(REPO).parts[0] == "docvl"
    return in_app and any(module == m or module.startswith(m + ".") for m in DEFERRABLE)


def test_no_function_level_project_imports() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for line, module in nested_project_imports(path.read_text(encoding="utf-8"))
        if not deferrable(path, module)
    ]
    assert offenders == []


def test_public_api_is_pinned() -> None:
    assert api.__all__ == [
        "Plan",
        "ResultEnvelope",
        "RunOptions",
        "Settings",
        "analyze",
        "counter_for",
        "extraction_as",
        "plan",
        "run",
    ]
    for name in ("plan", "run", "analyze", "counter_for", "extraction_as"):
        assert (getattr(api, name).__doc__ or "").strip(), name


def test_docstrings_name_repository_relative_paths() -> None:
    absolute = [
        f"{path.relative_to(REPO)}:{n}"
        for package in (*PACKAGES, "tests")
        for path in sorted((REPO / package).rglob("*.py"))
        if path.name != "test_layers.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "/work/" in line or "/root/" in line
    ]
    assert absolute == []
