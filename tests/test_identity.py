"""Cache identity: every part of a result's identity changes its key
(pipeline/engine/identity.py)."""

from __future__ import annotations

import dataclasses

import pytest

from docvl.pipeline.engine import identity
from docvl.pipeline.engine.identity import cache_key
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import task_specs

SHA = "a" * 64


def test_every_part_of_the_identity_changes_the_key() -> None:
    settings = Settings(tasks=("summary", "extract"), schema_name="invoice")
    specs = task_specs(settings)
    base = cache_key("record", [SHA], settings, specs)
    assert base == cache_key("record", [SHA], settings, task_specs(settings))  # deterministic
    edited_schema = [dataclasses.replace(specs[1], schema_version="1.1"), specs[0]][::-1]
    edited_prompt = [
        specs[0],
        dataclasses.replace(specs[1], instruction=specs[1].instruction + " "),
    ]
    variants = [
        cache_key("window", [SHA], settings, specs),
        cache_key("record", ["b" * 64], settings, specs),
        cache_key("record", [SHA], settings.model_copy(update={"dpi": 200}), specs),
        cache_key("record", [SHA], settings.model_copy(update={"model": "other"}), specs),
        cache_key("record", [SHA], settings, edited_schema),
        cache_key("record", [SHA], settings, edited_prompt),
        cache_key("record", [SHA], settings, specs, 0),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_the_store_format_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    specs = task_specs(settings)
    base = cache_key("window", [SHA], settings, specs, 0)
    monkeypatch.setattr(identity, "STORE_FORMAT", identity.STORE_FORMAT + "+")
    assert cache_key("window", [SHA], settings, specs, 0) != base


def test_machine_local_settings_do_not_change_the_key() -> None:
    settings = Settings()
    specs = task_specs(settings)
    local = settings.model_copy(update={"max_concurrency": 9, "request_timeout_s": 5.0})
    assert cache_key("record", [SHA], settings, specs) == cache_key("record", [SHA], local, specs)
