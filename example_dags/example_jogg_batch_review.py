"""
Lip-sync a manifest, have a person review the batch, then publish it (Airflow 3.1+).

``lip_sync_batch`` (``LipSyncBatchOperator``) lip-syncs every clip of the input manifest and writes
the result manifest; ``review_notes`` reads that manifest and writes the review: the counts, the
credits and links to a few results and to the clips that failed. ``review`` is a Human-in-the-loop
``ApprovalOperator``: the run waits (holding no worker slot) until someone answers "Approve" or
"Reject" on the task's Required Actions page in the UI or through the REST API. Approved,
``publish`` copies the result manifest and the saved clips to ``<publish_root>/<ds>/`` and updates
the ``JOGG_PUBLISHED_BATCH`` asset; rejected (or no answer within ``response_timeout``: the default
is "Reject"), ``publish`` is skipped and nothing is published.

Human-in-the-loop operators exist from Airflow 3.1 (``apache-airflow-providers-standard`` 1.6+).
On Airflow 3.0 this file defines no DAG: it still imports cleanly, so a DAGs folder shared with
3.0 shows no import error, and ``example_jogg_batch_operator`` is the batch without the review.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_jogg.operators.lip_sync_batch import LipSyncBatchOperator

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
except ImportError:  # Airflow 3.0's standard provider has no hitl module
    HAS_HITL = False
except Exception as error:  # newer standard providers on Airflow 3.0: "needs Airflow 3.1+"
    if type(error).__name__ != "AirflowOptionalProviderFeatureException":
        raise
    HAS_HITL = False
else:
    HAS_HITL = True

#: the sample manifest shipped beside this file (the media.example.com URLs work with the fake server)
SAMPLE_MANIFEST = str(Path(__file__).parent / "manifests" / "example_jogg_batch.csv")
#: updated when an approved batch is published; the extra names the published manifest
JOGG_PUBLISHED_BATCH = Asset(name="jogg_published_batch", uri="jogg://batches/published")
#: results linked in the review
SHOWN_RESULTS = 5
#: failed clips listed in the review
SHOWN_FAILURES = 10


def storage_path(location: str) -> Any:
    """A local path as a ``Path``, a URI (``s3://``, ``file://``) as an ``ObjectStoragePath``."""
    if "://" in location:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(location)
    return Path(location)


def read_result_manifest(location: str) -> list[dict[str, Any]]:
    """The rows of a batch's result manifest (imported when a task runs, not when the DAG is parsed)."""
    from airflow_provider_jogg.batch.report import read_result_manifest as read

    return read(location)


def review_body(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The Markdown shown to the reviewer: the counts, the credits, a few results, the failures."""
    counts = ", ".join(f"{n} {outcome}" for outcome, n in summary["counts"].items())
    lines = [
        f"**{summary['succeeded']} of {summary['clips']} clips succeeded** ({counts}).",
        "",
        f"- Video: {summary['duration_seconds']} s, about **{summary['credits']} credits**",
        f"- Result manifest: `{summary['manifest']}`",
        "",
    ]
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    if succeeded:
        lines.append(f"Results ({min(len(succeeded), SHOWN_RESULTS)} of {len(succeeded)}):")
        lines.append("")
        for row in succeeded[:SHOWN_RESULTS]:
            saved = f", saved as `{row['output_path']}`" if row["output_path"] else ""
            lines.append(f"- [{row['clip']}]({row['result_url']}) ({row['duration_seconds']} s{saved})")
        lines.append("")
    failed = [r for r in rows if r["status"] != "succeeded"]
    if failed:
        lines.append(f"Not succeeded ({min(len(failed), SHOWN_FAILURES)} of {len(failed)}):")
        lines.append("")
        lines.extend(f"- {r['clip']}: {r['status']}: {r['error']}" for r in failed[:SHOWN_FAILURES])
    return "\n".join(lines).rstrip() + "\n"


if HAS_HITL:
    with DAG(
        dag_id="example_jogg_batch_review",
        description="Lip-sync a manifest with JoggAI, have a person approve the batch, then publish it",
        schedule="@daily",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["example", "jogg", "batch", "human-in-the-loop"],
        params={
            "manifest": Param(
                SAMPLE_MANIFEST,
                type="string",
                description="the input manifest (.csv or .jsonl): an absolute path or a storage URI",
            ),
            "output_root": Param(
                "/data/jogg-batches",
                type="string",
                description="each run writes <output_root>/<ds>/manifest.csv and clips/ (path or URI)",
            ),
            "publish_root": Param(
                "/data/jogg-published",
                type="string",
                description="an approved batch is copied to <publish_root>/<ds>/ (path or URI)",
            ),
        },
    ) as dag:
        batch = LipSyncBatchOperator(
            task_id="lip_sync_batch",
            clips="{{ params.manifest }}",
            manifest_path="{{ params.output_root }}/{{ ds }}/manifest.csv",
            output_dir="{{ params.output_root }}/{{ ds }}/clips",
            max_failed_ratio=0.05,  # the reviewer sees the failures and decides
            max_credits=500,
            poke_interval=30,
            progress_interval=300,
            retries=2,
        )

        @task
        def review_notes(summary: dict[str, Any]) -> str:
            """The review's body, from the batch's summary and its result manifest."""
            return review_body(summary, read_result_manifest(summary["manifest"]))

        review = ApprovalOperator(
            task_id="review",
            subject="Publish the Jogg lip-sync batch of {{ ds }}?",
            body=review_notes(batch.output),
            defaults=ApprovalOperator.REJECT,  # no answer in time: nothing is published
            response_timeout=timedelta(hours=24),
        )

        @task(outlets=[JOGG_PUBLISHED_BATCH])
        def publish(summary: dict[str, Any], params: dict[str, Any], ds: str, outlet_events: Any) -> dict:
            """
            Copy every saved clip to ``<publish_root>/<ds>/clips/`` and write the result manifest there,
            its ``output_path`` column pointing at the published copies.
            """
            import csv
            import io
            import shutil

            target = storage_path(f"{params['publish_root'].rstrip('/')}/{ds}")
            (target / "clips").mkdir(parents=True, exist_ok=True)
            rows = read_result_manifest(summary["manifest"])
            copied = 0
            for row in rows:
                if row["status"] != "succeeded" or not row["output_path"]:
                    continue
                source = storage_path(row["output_path"])
                copy = target / "clips" / source.name
                with source.open("rb") as src, copy.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                row["output_path"] = str(copy)
                copied += 1
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            manifest = target / "manifest.csv"
            manifest.write_text(text.getvalue(), encoding="utf-8")
            published = {"manifest": str(manifest), "clips": copied, "credits": summary["credits"]}
            outlet_events[JOGG_PUBLISHED_BATCH].extra = published
            print(f"Published {copied} clips and the manifest to {target}")
            return published

        review >> publish(batch.output)
