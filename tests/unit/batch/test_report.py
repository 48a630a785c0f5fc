"""The result manifest as a downstream task reads it back (``read_result_manifest``)."""

from __future__ import annotations

import pytest

from airflow_provider_jogg.batch import ledger as states
from airflow_provider_jogg.batch import read_result_manifest
from airflow_provider_jogg.batch.ledger import ClipRecord
from airflow_provider_jogg.batch.report import COLUMNS, render

RECORDS = [
    ClipRecord(
        clip="intro",
        state=states.SAVED,
        task_id="t-1",
        result_url="https://cdn.example/intro.mp4",
        cover_url="https://cdn.example/intro.jpg",
        duration_seconds=250.0,
        output_path="/out/intro.mp4",
    ),
    ClipRecord(clip="outro, part 2", state=states.FAILED, task_id="t-2", error='Jogg said "no", twice'),
    ClipRecord(clip="credits", state=states.UNCERTAIN),
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_manifest_reads_back_as_written(tmp_path, suffix):
    path = tmp_path / f"manifest{suffix}"
    path.write_text(render(RECORDS, suffix), encoding="utf-8")
    rows = read_result_manifest(str(path))
    assert [list(row) for row in rows] == [list(COLUMNS)] * 3
    intro, outro, credits = rows
    assert intro == {
        "clip": "intro",
        "jogg_task_id": "t-1",
        "status": "succeeded",
        "result_url": "https://cdn.example/intro.mp4",
        "cover_url": "https://cdn.example/intro.jpg",
        "duration_seconds": 250.0,
        "credits": 2.0,  # 1 credit per 125 s
        "output_path": "/out/intro.mp4",
        "error": None,
    }
    # commas and quotes survive; what is unknown is None, never "" (CSV) or a missing key
    assert (outro["clip"], outro["status"], outro["error"]) == (
        "outro, part 2",
        "failed",
        'Jogg said "no", twice',
    )
    assert outro["credits"] is None
    assert outro["output_path"] is None
    assert (credits["status"], credits["jogg_task_id"]) == ("uncertain", None)


def test_a_uri_is_read_through_object_storage(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(render(RECORDS, ".csv"), encoding="utf-8")
    assert [r["clip"] for r in read_result_manifest(f"file://{path}")] == [
        "intro",
        "outro, part 2",
        "credits",
    ]
