"""OpenLineage: which source clip and audio became which lip-synced video.

Used by ``get_openlineage_facets_on_complete`` of the operator and the sensor, which import this
module lazily. Needs the optional ``apache-airflow-providers-openlineage`` package
(``pip install airflow-provider-jogg[openlineage]``); without it Airflow never calls those methods.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import attr
from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
from airflow.providers.openlineage.extractors import OperatorLineage

#: the custom run facet's name in emitted events
RUN_FACET_NAME = "jogg_lip_sync"


@attr.define
class JoggLipSyncRunFacet(RunFacet):
    """The Jogg lip-sync task behind this run."""

    jogg_task_id: str | None = attr.field(default=None)
    playback_type: str | None = attr.field(default=None)
    result_url: str | None = attr.field(default=None)


def dataset_name(location: str) -> tuple[str, str]:
    """OpenLineage ``(namespace, name)`` of a media location, following the naming spec."""
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return "file", os.path.abspath(parts.path if parts.scheme == "file" else location)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"


def operator_lineage(*, inputs: list[str], outputs: list[str], **facet: Any) -> OperatorLineage:
    """An ``OperatorLineage`` with media datasets and the Jogg task in a run facet."""
    run_facets = {RUN_FACET_NAME: JoggLipSyncRunFacet(**facet)} if facet.get("jogg_task_id") else {}
    return OperatorLineage(
        inputs=[Dataset(*dataset_name(location)) for location in inputs],
        outputs=[Dataset(*dataset_name(location)) for location in outputs],
        run_facets=run_facets,
    )
