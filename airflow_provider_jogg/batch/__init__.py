"""Batch lip sync: many clips in one task instance (re-exports only)."""

from __future__ import annotations

from airflow_provider_jogg.batch.manifest import ClipRow, manifest_fingerprint, read_clips

__all__ = ["ClipRow", "manifest_fingerprint", "read_clips"]
