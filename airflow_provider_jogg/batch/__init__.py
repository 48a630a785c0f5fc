"""Batch lip sync: many clips in one task instance (re-exports only; the operator is in ``operators/``)."""

from __future__ import annotations

from airflow_provider_jogg.batch.budget import BatchEstimate, check_budget, estimate_batch
from airflow_provider_jogg.batch.durations import media_duration
from airflow_provider_jogg.batch.manifest import ClipRow, manifest_fingerprint, read_clips
from airflow_provider_jogg.batch.report import read_result_manifest

__all__ = [
    "BatchEstimate",
    "ClipRow",
    "check_budget",
    "estimate_batch",
    "manifest_fingerprint",
    "media_duration",
    "read_clips",
    "read_result_manifest",
]
