"""The inbox flow in process (temporary Prefect server): delivery, ledger, changes, overlap,
retries."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import json
import os
from pathlib import Path

import flowkit
import pytest

import docvl.flows  # noqa: F401
from docvl.flows.delivery import LEDGER_DIR, output_name
from docvl.flows.inbox import inbox_flow, scan, serve_inbox
from docvl.flows.options import RunOptions
from docvl.flows.store import safe_stem
from docvl.pipeline.errors import UsageError

FACTORY = "flowkit:scripted_backend"


pytestmark = pytest.mark.usefixtures("prefect_harness", "flowkit_reset")


def _run(inbox: Path, outbox: Path, cache: Path, **kw: object) -> dict[str, int]:
    """One scheduled pass; its counts. The run ends Failed exactly when a document failed or is
    left for a retry."""
    state = inbox_flow(
        str(inbox),
        str(outbox),
        flowkit.test_settings(cache, max_attempts=1),
        options=RunOptions(backend_factory=FACTORY, retries=0),
        min_age_s=0.0,
        return_state=True,
        **kw,
    )
    counts: dict[str, int] = state.result(raise_on_failure=False)
    assert state.is_failed() == bool(counts["failed"] or counts["retry"]), state
    assert state.message == ", ".join(f"{k} {n}" for k, n in counts.items())
    return counts


def _counts(picked: int, delivered: int, *, failed: int = 0, retry: int = 0) -> dict[str, int]:
    return {"picked": picked, "delivered": delivered, "failed": failed, "retry": retry}


def _outputs(outbox: Path) -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in outbox.glob("*.json")}


def test_delivers_once_per_document_and_reruns_nothing(tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    flowkit.make_pdfs(inbox, 3)
    (inbox / ".hidden.pdf").write_bytes(b"x")
    (inbox / "upload.pdf.part").write_bytes(b"x")
    assert _run(inbox, outbox, tmp_path / "c") == _counts(3, 3, retry=0)
    outs = _outputs(outbox)
    assert len(outs) == 3 and all(o["status"] == "ok" for o in outs.values())
    assert sorted(n.split(".")[0] for n in outs) == ["doc000", "doc001", "doc002"]
    [manifest] = (outbox / "manifests").glob("*.jsonl")
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert sorted(r["output"] for r in rows) == sorted(outs)
    assert len(list((outbox / LEDGER_DIR).glob("*.done"))) == 3
    assert not list((outbox / LEDGER_DIR).glob("*.claim"))
    assert len(flowkit.CALLS) == 3
    flowkit.reset()
    assert _run(inbox, outbox, tmp_path / "c")["picked"] == 0
    assert flowkit.CALLS == [] and len(list((outbox / "manifests").glob("*.jsonl"))) == 1


def test_changed_file_is_processed_again_and_copies_are_not(tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    [doc] = flowkit.make_pdfs(inbox, 1)
    _run(inbox, outbox, tmp_path / "c")
    flowkit.reset()
    (inbox / "same-bytes.pdf").write_bytes(doc.read_bytes())
    assert _run(inbox, outbox, tmp_path / "c")["picked"] == 0  # same content under a new name
    flowkit.make_pdf(doc, pages=3, text="new content")
    assert _run(inbox, outbox, tmp_path / "c") == _counts(1, 1, retry=0)
    assert len(flowkit.CALLS) == 1 and len(_outputs(outbox)) == 2


def test_overlapping_runs_never_process_a_document_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    flowkit.make_pdfs(inbox, 6, pages=1)
    monkeypatch.setenv("DOCVL_TEST_DELAY_S", "0.3")
    with cf.ThreadPoolExecutor(2) as pool:
        futs = [
            pool.submit(contextvars.copy_context().run, _run, inbox, outbox, tmp_path / "c")
            for _ in range(2)
        ]
        results = [f.result() for f in futs]
    assert sum(r["delivered"] for r in results) == 6
    assert len(flowkit.CALLS) == 6 and len(set(flowkit.CALLS)) == 6
    assert len(_outputs(outbox)) == 6


def test_backend_failure_is_not_delivered_and_retried_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    flowkit.make_pdfs(inbox, 1)
    monkeypatch.setenv("DOCVL_TEST_FAIL_FIRST", "1")
    assert _run(inbox, outbox, tmp_path / "c") == _counts(1, 0, retry=1)
    assert _outputs(outbox) == {}
    assert _run(inbox, outbox, tmp_path / "c") == _counts(1, 1, retry=0)


def test_bad_input_is_delivered_as_failed(tmp_path: Path) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "notes.pdf").write_text("just text, not a pdf at all")
    _run(inbox, outbox, tmp_path / "c")
    [out] = _outputs(outbox).values()
    assert out["status"] == "failed" and flowkit.CALLS == []


def test_scan_skips_recent_files(tmp_path: Path) -> None:
    flowkit.make_pdfs(tmp_path, 1)
    assert scan(tmp_path, min_age_s=3600) == []
    assert len(scan(tmp_path, min_age_s=0)) == 1


def test_serve_needs_one_schedule(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        serve_inbox(flowkit.test_settings(tmp_path), tmp_path, tmp_path / "o")
    with pytest.raises(UsageError):
        serve_inbox(
            flowkit.test_settings(tmp_path), tmp_path, tmp_path / "o", cron="* * * * *", interval=5
        )


def test_hostile_file_names_are_delivered_inside_the_outbox(tmp_path: Path) -> None:
    """Names that are not UTF-8, 251 bytes long, with newlines or ``..``: each is delivered,
    inside the outbox, and none stops the files sorted after it (the next run too)."""
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    names = [
        os.fsdecode(b"bad-\xff\xfe-name.pdf"),  # not UTF-8
        "a" * 247 + ".pdf",  # 251 bytes: the longest names most file systems allow
        "new\nline.pdf",
        "dots...pdf",  # trailing dots are stripped from the output's stem
        "a\\..\\..\\escape.pdf",  # a backslashed ``..`` path: one plain name
        # (a name starting with "." is hidden: scan skips it)
        "zz-last.pdf",  # sorted after every other name
    ]
    for i, name in enumerate(names):  # made under a plain name, then renamed
        made = flowkit.make_pdf(tmp_path / f"staging{i}.pdf", pages=1, text=f"hostile name {i}")
        os.replace(made, inbox / name)
    assert _run(inbox, outbox, tmp_path / "c") == _counts(6, 6, retry=0)
    outs = sorted(outbox.glob("*.json"))
    assert len(outs) == 6
    for out in outs:
        assert out.parent == outbox and "\n" not in out.name and not out.name.startswith(".")
        assert len(os.fsencode(out.name)) <= 255
        out.name.encode()  # valid UTF-8
    records = [json.loads(out.read_text()) for out in outs]
    statuses = {os.fsencode(Path(r["source"]["path"]).name): r["status"] for r in records}
    assert sorted(statuses) == sorted(map(os.fsencode, names))
    assert list(statuses.values()) == ["ok"] * 6  # the name that is not UTF-8 included
    [manifest] = (outbox / "manifests").glob("*.jsonl")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in rows) == sorted(names)  # the exact names back
    # The next scheduled run sees nothing new and does not fail on the stat cache.
    assert _run(inbox, outbox, tmp_path / "c")["picked"] == 0


def test_a_failed_delivery_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docvl.flows.inbox as inbox_module

    inbox, outbox = tmp_path / "in", tmp_path / "out"
    flowkit.make_pdfs(inbox, 3, pages=1)
    real = inbox_module.deliver

    def flaky(out_dir: Path, path: Path, sha: str, record: dict[str, object]) -> Path:
        if path.name == "doc000.pdf":
            raise OSError(36, "File name too long")
        return real(out_dir, path, sha, record)

    monkeypatch.setattr(inbox_module, "deliver", flaky)
    assert _run(inbox, outbox, tmp_path / "c") == _counts(3, 2, retry=1)
    monkeypatch.setattr(inbox_module, "deliver", real)
    assert _run(inbox, outbox, tmp_path / "c")["delivered"] == 1  # retried on the next run


def test_safe_stem() -> None:
    assert safe_stem("../../etc/passwd.pdf") == "passwd"
    assert safe_stem("a\nb\x00c.pdf") == "a_b_c"
    assert safe_stem("...pdf") == "document" and safe_stem("") == "document"
    assert safe_stem(os.fsdecode(b"\xff.pdf")) == "\ufffd"
    long = safe_stem("é" * 200 + ".pdf")
    assert len(long.encode()) <= 180 and long == "é" * 90
    assert output_name(Path("x/../..\\y.pdf"), "0" * 64) == "_y.000000000000.json"
