"""OpenLineage: a real DAG run with the OpenLineage provider's file transport, events checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("airflow.providers.openlineage", reason="the [openlineage] extra is not installed")

SCRIPT = textwrap.dedent(
    """
    import datetime, json, os, sys
    from airflow_provider_jogg.testing import FakeJoggServer
    from airflow_provider_jogg.testing.dagrun import reset_metadata_db, run_dag, task_states, xcom_value

    with FakeJoggServer(api_key="k-lineage-123456", pending_seconds=0.05, processing_seconds=0.2) as server:
        os.environ["AIRFLOW_CONN_JOGG_DEFAULT"] = json.dumps(
            {"conn_type": "jogg", "host": server.url, "password": "k-lineage-123456"}
        )
        from airflow.sdk import DAG
        from airflow_provider_jogg.operators.lip_sync import LipSyncOperator
        from airflow_provider_jogg.sensors.lip_sync import LipSyncSensor

        reset_metadata_db()
        with DAG("jogg_lineage", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
            op = LipSyncOperator(
                task_id="lip_sync",
                video_url="https://cdn.example.com/clips/interview.mp4",
                audio_url="https://cdn.example.com/dubs/interview.de.mp3",
            )
            LipSyncSensor(
                task_id="wait_for_lip_sync",
                jogg_task_id=op.output,
                poke_interval=0.1,
                output_path=sys.argv[2],
            )
        run = run_dag(dag)
        print("SUMMARY " + json.dumps({"states": task_states(run), "task_id": xcom_value(run, "lip_sync"),
                          "result": xcom_value(run, "wait_for_lip_sync")}), flush=True)
    """
)


def read_events(path) -> list[dict]:
    events = []
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name)) as f:
            events.extend(json.loads(line) for line in f if line.strip())
    return events


def test_lineage_events_name_inputs_result_and_jogg_task(tmp_path):
    events_dir = tmp_path / "ol"
    events_dir.mkdir()
    (tmp_path / "home").mkdir()  # Airflow 3.0 does not create AIRFLOW_HOME before opening its DB
    output = tmp_path / "out" / "result.mp4"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_dir / "events.jsonl"), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "jogg-tests",
        # events are emitted from a forked process with a deadline; a loaded CI machine needs room
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "120",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "run", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert summary["states"] == {"lip_sync": "success", "wait_for_lip_sync": "success"}
    task_id, result = summary["task_id"], summary["result"]

    complete = {
        e["job"]["name"].rsplit(".", 1)[-1]: e
        for e in read_events(events_dir)
        if e.get("eventType") == "COMPLETE" and e["job"]["name"].startswith("jogg_lineage.")
    }
    assert set(complete) == {"lip_sync", "wait_for_lip_sync"}

    create = complete["lip_sync"]
    assert {(d["namespace"], d["name"]) for d in create["inputs"]} == {
        ("https://cdn.example.com", "clips/interview.mp4"),
        ("https://cdn.example.com", "dubs/interview.de.mp3"),
    }
    assert create["run"]["facets"]["jogg_lip_sync"]["jogg_task_id"] == task_id
    assert create["run"]["facets"]["jogg_lip_sync"]["playback_type"] == "normal"

    wait = complete["wait_for_lip_sync"]
    outputs = {(d["namespace"], d["name"]) for d in wait["outputs"]}
    root = result["result_url"].split("/files/")[0]
    assert (root, f"files/{task_id}/result.mp4") in outputs
    assert ("file", str(output)) in outputs
    assert wait["run"]["facets"]["jogg_lip_sync"]["jogg_task_id"] == task_id
    assert wait["run"]["facets"]["jogg_lip_sync"]["result_url"] == result["result_url"]
    assert output.exists()
