"""A fake JoggAI API for testing DAGs offline.

:class:`FakeJoggServer` is a real HTTP server (standard library only, no Airflow import) that
speaks the JoggAI lip-sync API on a loopback address. Point the Jogg connection (or the hook's
base URL) at ``server.url`` and the provider talks to it exactly as it would to
``https://api.jogg.ai``: create calls return task ids, status polls move from ``pending`` through
``processing`` to ``success`` (or ``failed`` when a media URL contains ``fail``), results can be
downloaded, and local files can be uploaded through the pre-signed URL flow. A media URL with
``?jogg_fake_finish_after_poll=2`` gives its task its own timing: it finishes 2 s after the first
status request answered for it (``jogg_fake_finish_after_create=30``: 30 s after its creation).

In a pytest test::

    from airflow_provider_jogg.testing import FakeJoggServer, Fault

    def test_my_dag():
        with FakeJoggServer(api_key="test-key", pending_seconds=0.05, processing_seconds=0.1) as server:
            # Point the Jogg connection at the fake: host = server.url, password = "test-key"
            # (plain http:// is fine: the fake only listens on loopback).
            server.add_fault(Fault("status", status=503, path="/v2/lip_sync_video", times=2))
            ...  # run the DAG, e.g. dag.test()
            assert server.create_count == 1
            assert server.count_status(503) == 2

From a shell (for the demo, or a DAG run by hand)::

    python -m airflow_provider_jogg.testing --port 8099 --api-key test-key
    # prints JOGG_FAKE_URL=http://127.0.0.1:8099 and serves until Ctrl-C / SIGTERM

Over HTTP, ``/_fake/requests`` lists the recorded API requests, ``/_fake/tasks`` the tasks,
``POST /_fake/faults`` adds a :class:`Fault` (a JSON object with the same fields) and
``POST /_fake/reset`` clears faults and recorded requests.

Between the provider and the server, :class:`FaultProxy` breaks the network on demand: responses
cut by a TCP reset after N bytes, responses stalled past the client's timeout, refused
connections::

    with FakeJoggServer(api_key="test-key") as server, FaultProxy(server.url) as proxy:
        # point the Jogg connection at proxy.url instead of server.url
        proxy.inject("refuse")
        ...
        proxy.heal()
"""

from __future__ import annotations

from airflow_provider_jogg.testing.proxy import (
    PROXY_FAULT_KINDS,
    FaultProxy,
    ProxyConnection,
    ProxyFault,
    ProxyStats,
)
from airflow_provider_jogg.testing.server import (
    FAILURE_MESSAGE,
    FAULT_KINDS,
    PLAYBACK_TYPES,
    FakeJoggServer,
    Fault,
    RecordedRequest,
)

__all__ = [
    "FAILURE_MESSAGE",
    "FAULT_KINDS",
    "PLAYBACK_TYPES",
    "PROXY_FAULT_KINDS",
    "FakeJoggServer",
    "Fault",
    "FaultProxy",
    "ProxyConnection",
    "ProxyFault",
    "ProxyStats",
    "RecordedRequest",
]
