"""Batch lip sync: many clips in one task instance (the pieces; the operator is in ``operators/``)."""

from __future__ import annotations

from airflow_provider_jogg.batch.budget import BatchEstimate, check_budget, estimate_batch
from airflow_provider_jogg.batch.durations import media_duration

__all__ = ["BatchEstimate", "check_budget", "estimate_batch", "media_duration"]
