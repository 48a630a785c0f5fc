"""What the sync and async hook tests share."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.protocol import CREATE_PATH, QUOTA_PATH, STATUS_PATH, UPLOAD_PATH, WHOAMI_PATH
from airflow_provider_jogg.testing import Fault
from tests.conftest import FAST_EXTRA, TEST_API_KEY

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CREATE = CREATE_PATH
STATUS = STATUS_PATH.format(task_id="")
WHOAMI = WHOAMI_PATH
QUOTA = QUOTA_PATH
UPLOAD = UPLOAD_PATH
VIDEO = "https://media.example/clip.mp4"
AUDIO = "https://media.example/voice.mp3"
WRONG_KEY = "sk-jogg-WRONGKEY-0000000000000000"
MAX_RETRIES = FAST_EXTRA["max_retries"]
#: failures a read-only request is sent again after, each with the error it raises when it persists
TRANSIENT_FAULTS = [
    pytest.param(Fault("status", status=500), exc.JoggServerError, id="500"),
    pytest.param(Fault("status", status=503), exc.JoggServerError, id="503"),
    pytest.param(Fault("html", status=502), exc.JoggServerError, id="502-html"),
    pytest.param(Fault("business", code=50000, msg="System error"), exc.JoggServerError, id="code-50000"),
    pytest.param(Fault("non_json"), exc.JoggMalformedResponseError, id="non-json"),
    pytest.param(Fault("truncated"), exc.JoggConnectionError, id="truncated"),
    pytest.param(Fault("close"), exc.JoggConnectionError, id="closed"),
    pytest.param(Fault("reset"), exc.JoggConnectionError, id="reset"),
    pytest.param(Fault("status", status=429), exc.JoggRateLimitError, id="429"),
    pytest.param(Fault("status", status=408), exc.JoggNotProcessedError, id="408"),
    pytest.param(Fault("html", status=425), exc.JoggNotProcessedError, id="425-html"),
]


if TYPE_CHECKING:
    from types import ModuleType


class SteppedWallClock:
    """
    Stands in for the ``time`` module inside some of the provider's modules: ``time()`` is the wall
    clock moved by ``step`` seconds (as NTP or a resumed VM steps it); everything else is the real
    module. ``sleep`` records each wait and refuses one of a minute or more, the stall under test.
    """

    def __init__(self) -> None:
        self.step = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return time.time() + self.step

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds >= 60:
            raise AssertionError(f"asked to sleep {seconds:.0f} s: requests are stalled")
        time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def step_wall_clock(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> SteppedWallClock:
    """Give ``modules`` (those that use ``time`` at all) a wall clock the test can step."""
    clock = SteppedWallClock()
    for module in modules:
        if hasattr(module, "time"):
            monkeypatch.setattr(module, "time", clock)
    return clock


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, then closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(error: BaseException) -> None:
    text = f"{error} {error!r}"
    assert TEST_API_KEY not in text
    assert WRONG_KEY not in text


class Recorded(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


#: what a :class:`RecordingServer` answers: status, headers, body
Answer = tuple[int, dict[str, str], bytes]


class RecordingServer:
    """
    A bare HTTP/1.1 server on a loopback address that records every request it receives, whatever
    the path, and answers with ``respond(method, path)`` (default: 200, empty). It plays the hosts
    the provider must *not* reach (a redirect target, an internal service) and media hosts with
    answers the fake Jogg server has no reason to give (HTML, cookies).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        respond: Callable[[str, str], Answer] | None = None,
        port: int = 0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.received: list[Recorded] = []
        #: the TLS server names (SNI) clients asked for, with ``tls``
        self.server_names: list[str | None] = []
        self.respond = respond or (lambda method, path: (200, {}, b""))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.received.append(Recorded(self.command, self.path, headers))
                status, extra, body = server.respond(self.command, self.path)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _any

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.host = host
        self.port = self._httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def self_signed_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for the DNS name ``name`` and its key, as PEM files; trust it by its own path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
