"""
What a batch hands on: the result manifest (one row per clip) and the summary that goes to XCom.

The manifest is written whole at the end of every try, failed or not, as CSV or JSON Lines (by the
suffix of ``manifest_path``), locally (atomically: a temporary name, then a rename) or to object
storage. The summary carries counts, totals and the manifest's location, never the rows.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_jogg.batch import ledger as states
from airflow_provider_jogg.media_inputs import is_local_path, to_path
from airflow_provider_jogg.results import credits_estimate

if TYPE_CHECKING:
    from airflow_provider_jogg.batch.ledger import ClipRecord, Ledger

#: the result manifest's columns, in order
COLUMNS = (
    "clip",
    "jogg_task_id",
    "status",
    "result_url",
    "cover_url",
    "duration_seconds",
    "credits",
    "output_path",
    "error",
)
#: what a clip's ledger state is called in the manifest and the summary
OUTCOMES = {
    states.NEW: "not_started",
    states.SENDING: "uncertain",
    states.UNCERTAIN: "uncertain",
    states.REFUSED: "refused",
    states.SKIPPED: "not_created",
    states.CREATED: "pending",
    states.FAILED: "failed",
    states.SUCCEEDED: "succeeded",
    states.SAVED: "succeeded",
}


def manifest_row(record: ClipRecord) -> dict[str, Any]:
    return {
        "clip": record.clip,
        "jogg_task_id": record.task_id,
        "status": OUTCOMES.get(record.state, record.state),
        "result_url": record.result_url,
        "cover_url": record.cover_url,
        "duration_seconds": record.duration_seconds,
        "credits": credits_estimate(record.duration_seconds)
        if record.state in (states.SUCCEEDED, states.SAVED)
        else None,
        "output_path": record.output_path if record.state == states.SAVED else None,
        "error": record.error,
    }


def render(records: list[ClipRecord], suffix: str) -> str:
    """The manifest's text: JSON Lines for ``.jsonl``/``.ndjson``, else CSV."""
    rows = [manifest_row(r) for r in records]
    if suffix in (".jsonl", ".ndjson"):
        return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def write_manifest(ledger: Ledger, location: Any) -> str:
    """Write the result manifest to ``location`` (a Path or ObjectStoragePath); returns where."""
    text = render(list(ledger.records.values()), Path(str(location)).suffix.lower())
    if is_local_path(location):
        location.parent.mkdir(parents=True, exist_ok=True)
        partial = location.with_name(f".{location.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(location)
    else:
        with location.open("w", encoding="utf-8") as handle:
            handle.write(text)
    return str(location)


#: the result manifest's number columns (empty in CSV, null in JSON Lines, when unknown)
_NUMBERS = ("duration_seconds", "credits")


def read_result_manifest(location: Any) -> list[dict[str, Any]]:
    """
    The rows of a batch's result manifest, as written: one dict per clip with the :data:`COLUMNS`
    (``None`` where a value is unknown, numbers as floats), for a task downstream of the batch
    (a review, a publish step) reading ``summary["manifest"]``.

    :param location: a path, a URI or an ``ObjectStoragePath`` (``.csv``, ``.jsonl`` or ``.ndjson``)
    """
    path = to_path(location, "result manifest")
    text = path.read_text(encoding="utf-8")
    if str(path.suffix).lower() in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {k: (v if v != "" else None) for k, v in raw.items()}
        for column in _NUMBERS:
            if row.get(column) is not None:
                row[column] = float(row[column])
        rows.append(row)
    return rows


def summary(ledger: Ledger, manifest: str) -> dict[str, Any]:
    """Counts by outcome, totals over the clips that succeeded, and the manifest's location."""
    counts: dict[str, int] = {}
    seconds = 0.0
    for record in ledger.records.values():
        outcome = OUTCOMES.get(record.state, record.state)
        counts[outcome] = counts.get(outcome, 0) + 1
        if record.state in (states.SUCCEEDED, states.SAVED) and record.duration_seconds:
            seconds += record.duration_seconds
    return {
        "clips": len(ledger.records),
        "counts": dict(sorted(counts.items())),
        "succeeded": counts.get("succeeded", 0),
        "failed": sum(n for outcome, n in counts.items() if outcome != "succeeded"),
        "duration_seconds": round(seconds, 3),
        "credits": credits_estimate(seconds),
        "manifest": manifest,
    }
