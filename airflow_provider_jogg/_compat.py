"""Small shims over Airflow 3.x differences, in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Connection


def mask_secret(secret: str) -> None:
    """Register a secret with Airflow's log masker (best effort on every 3.x)."""
    try:
        from airflow.sdk.log import mask_secret as _mask
    except ImportError:  # pragma: no cover - Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret as _mask  # type: ignore[no-redef]
    _mask(secret)


async def amask_secret(secret: str) -> None:
    """Async twin of :func:`mask_secret`: the sync one may deadlock inside a running event loop."""
    try:
        from airflow.sdk.log import amask_secret as _amask
    except ImportError:  # pragma: no cover - older 3.x
        await asyncio.to_thread(mask_secret, secret)
        return
    await _amask(secret)


async def aget_connection(conn_id: str) -> Connection:
    """Look a connection up without blocking the event loop (``BaseHook.aget_connection``)."""
    from airflow.sdk import BaseHook

    getter = getattr(BaseHook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    return await asyncio.to_thread(BaseHook.get_connection, conn_id)  # pragma: no cover - Airflow 3.0


async def aextra_dejson(conn: Any) -> dict[str, Any]:
    getter = getattr(conn, "aextra_dejson", None)
    if getter is not None:
        return dict(await getter())
    return dict(conn.extra_dejson)  # pragma: no cover - older 3.x
