"""Units of work and record keys (pipeline/engine/units.py): duplicates share a unit, unreadable
files get no key, a shared question is one unit with a key per file, and the module imports
without the engine's loaders, the model layer or Prefect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flowkit

from docvl.pipeline.engine import Engine
from docvl.pipeline.engine.units import expand, make_units, record_keys, sha256_file
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

REPO = Path(__file__).resolve().parents[1]


def test_same_content_is_one_unit_and_unreadable_files_have_no_key(tmp_path: Path) -> None:
    a = flowkit.make_pdf(tmp_path / "a.pdf", 1)
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(a.read_bytes())
    b = flowkit.make_pdf(tmp_path / "b.pdf", 1, text="other")
    missing = tmp_path / "missing.pdf"
    settings = Settings(backend="scripted")
    specs = task_specs(settings)
    units, of_path = make_units([a, copy, b, missing], settings, specs)
    assert of_path == [0, 0, 1, 2] and units[0].paths == (a,)
    assert units[0].shas == (sha256_file(a),) and units[2].shas == (None,)
    keys = [record_keys(u, settings, specs) for u in units]
    assert keys[2] == [None] and keys[0][0] != keys[1][0]
    assert keys[0][0] is not None and keys[0][0].startswith("docvl-record-")
    # the engine's keys are these keys
    engine = Engine(settings, ScriptedBackend(), TokenCounter())
    assert [engine.record_keys(u) for u in units] == keys
    other = settings.model_copy(update={"dpi": settings.dpi + 1})
    assert record_keys(units[0], other, task_specs(other)) != keys[0]


def test_a_shared_question_is_one_unit_with_a_key_per_file(tmp_path: Path) -> None:
    paths = flowkit.make_pdfs(tmp_path, 2, pages=1)
    settings = Settings(backend="scripted", tasks=("ask",), question="Q?", share_windows=True)
    specs = task_specs(settings)
    units, of_path = make_units(paths, settings, specs)
    assert of_path == [0, 0] and units[0].paths == tuple(paths)
    keys = record_keys(units[0], settings, specs)
    assert len(set(keys)) == 2 and None not in keys


def test_expand_gives_a_duplicate_a_copy_under_its_own_path(tmp_path: Path) -> None:
    a = flowkit.make_pdf(tmp_path / "a.pdf", 1)
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(a.read_bytes())
    settings = flowkit.test_settings(tmp_path / "cache")
    engine = Engine(settings, flowkit.locked_scripted_backend(settings), TokenCounter())
    units, of_path = engine.units([a, copy])
    done = [engine.analyze_unit(u) for u in units]
    first, second = expand(units, of_path, done, [a, copy])
    assert first is done[0][0] and first.source.path == str(a)
    assert second.source.path == str(copy) and done[0][0].source.path == str(a)
    assert second.model_dump(exclude={"source"}) == first.model_dump(exclude={"source"})


def test_importing_units_leaves_the_heavy_layers_out() -> None:
    code = (
        "import json, sys; import docvl.pipeline.engine.units; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    heavy = {"pymupdf", "prefect", "torch", "transformers", "openai", "numpy"}
    heavy |= {"docvl.pipeline.engine.core", "docvl.pipeline.engine.prepare"}
    heavy |= {"docvl.pipeline.ingest", "docvl.pipeline.model.factory"}
    assert not loaded & heavy
