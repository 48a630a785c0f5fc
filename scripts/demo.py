"""Run the example DAG end to end against the fake Jogg server on loopback, then clean up.

``make demo`` calls this. It needs no network: a temporary Airflow home, a fresh metadata DB, the
``jogg_default`` connection pointing at the fake server, and one real ``dag.test()`` run of
``example_dags/example_jogg_lip_sync.py`` (operator -> deferrable sensor -> publish).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_dags" / "example_jogg_lip_sync.py"


def main() -> int:
    home = tempfile.mkdtemp(prefix="jogg-demo-airflow-")
    # Airflow reads these when first imported: set them before any Airflow import
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE.parent),
    )
    from airflow_provider_jogg.testing import FakeJoggServer

    api_key = "demo-" + secrets.token_hex(8)
    try:
        with FakeJoggServer(api_key=api_key, pending_seconds=1.0, processing_seconds=4.0) as server:
            print(f"Fake Jogg server listening on {server.url}")
            os.environ["AIRFLOW_CONN_JOGG_DEFAULT"] = json.dumps(
                {
                    "conn_type": "jogg",
                    "host": server.url,
                    "password": api_key,
                    "extra": {"api_platform": "demo"},
                }
            )
            from airflow_provider_jogg.testing.dagrun import (
                load_dag,
                reset_metadata_db,
                run_dag,
                task_states,
                xcom_value,
            )

            reset_metadata_db()
            dag_run = run_dag(load_dag(EXAMPLE, "example_jogg_lip_sync"))
            states = task_states(dag_run)
            task_id = xcom_value(dag_run, "lip_sync")
            result = xcom_value(dag_run, "wait_for_lip_sync") or {}
            published = xcom_value(dag_run, "publish") or {}
            print()
            print(f"DAG run state:   {dag_run.state}")
            print(f"Task states:     {states}")
            print(f"Jogg task id:    {task_id}")
            print(f"Result URL:      {result.get('result_url')}")
            print(f"Downloaded:      {published.get('bytes')} bytes")
            print(f"Create requests: {server.create_count}")
            ok = (
                str(dag_run.state) in ("success", "DagRunState.SUCCESS")
                and bool(result.get("result_url"))
                and published.get("result_url") == result.get("result_url")
                and server.create_count == 1
            )
            print("Demo succeeded." if ok else "Demo FAILED.")
            return 0 if ok else 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
