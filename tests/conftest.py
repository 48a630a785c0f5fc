"""Shared fixtures: an isolated Airflow home per test process, the fake Jogg server, connections, S3."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Airflow reads its configuration when first imported: isolate it before anything imports it.
# Each pytest-xdist worker is its own process and gets its own home and SQLite database.
_HOME = tempfile.mkdtemp(prefix="jogg-tests-airflow-")
ROOT = Path(__file__).resolve().parent.parent
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ.pop("AIRFLOW_CONN_JOGG_DEFAULT", None)
# The deferral floor guards against a scheduler race of real deployments (apache/airflow#67287);
# in-process runs (dag.test(), triggers driven directly) have no scheduler, so no race to guard
# against. The e2e suites start real deployments without this variable, with the default floor.
os.environ["AIRFLOW__JOGG__MIN_DEFERRAL_SECONDS"] = "0"

import pytest  # noqa: E402

from airflow_provider_jogg.testing import FakeJoggServer  # noqa: E402

#: distinctive, so a leak anywhere can be searched for
TEST_API_KEY = "sk-jogg-TESTKEY-7d1f3a9c2b4e6a80"
#: fast retries for tests: the policy is the same, only the base wait is shorter, and a 429 counts as
#: a retry (``rate_limit_wait`` 0) so that a test of "429 every time" ends after ``max_retries``; the
#: tests of waiting out 429s set ``rate_limit_wait`` themselves
FAST_EXTRA = {"retry_backoff": 0.01, "timeout": 3, "max_retries": 3, "rate_limit_wait": 0}


def conn_json(url: str, key: str | None = TEST_API_KEY, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` value for a Jogg connection."""
    body: dict[str, object] = {"conn_type": "jogg", "host": url, "extra": {**FAST_EXTRA, **extra}}
    if key is not None:
        body["password"] = key
    return json.dumps(body)


@pytest.fixture
def fake_jogg():
    """A fresh fake Jogg server on loopback: tasks finish in about 0.3 s, duration 12.5 s."""
    # shipped sample media, no ffmpeg: unit tests need fast, fixed answers (media tests opt in)
    server = FakeJoggServer(api_key=TEST_API_KEY, pending_seconds=0.05, processing_seconds=0.25, ffmpeg=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jogg_conn(fake_jogg, monkeypatch):
    """``jogg_default`` pointing at the fake server with the test key."""
    monkeypatch.setenv("AIRFLOW_CONN_JOGG_DEFAULT", conn_json(fake_jogg.url))
    return fake_jogg


@pytest.fixture
def set_conn(monkeypatch):
    """Define a connection: ``set_conn("jogg_x", url, key=..., **extra)``."""

    def _set(conn_id: str, url: str, key: str | None = TEST_API_KEY, **extra: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(url, key, **extra))
        return conn_id

    return _set


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh metadata DB for this test process (dag.test() needs one)."""
    from airflow_provider_jogg.testing.dagrun import reset_metadata_db

    reset_metadata_db()
    return _HOME


@pytest.fixture(autouse=True)
def _fresh_account_throttles():
    """No account throttle outlives a test: an account keeps the lowest rate it was given in the
    process, and a later test's fake server may get a port an earlier one had."""
    yield
    from airflow_provider_jogg.registries import forget_throttles

    forget_throttles()


# object storage: moto's S3 server (media examples, batch manifests)
@pytest.fixture(scope="session")
def moto_endpoint():
    """
    moto's S3-compatible server on 127.0.0.1 and a free port, one per test process: Airflow's object
    storage caches a filesystem per scheme and connection id, so the endpoint must not change (and
    every test module of the process must share this one server).
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """``aws_default`` pointing at moto (dummy keys), and a boto3 client to set up and inspect buckets."""
    import boto3

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
