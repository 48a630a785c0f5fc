"""Faults: deliberate misbehaviours of the fake server, which requests they match and what they answer."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_jogg.testing.server.responses import (
    Response,
    dumps,
    envelope,
    json_response,
    reason,
)

__all__ = ["FAULT_KINDS", "Fault", "FaultList", "fault_response", "truncated_body"]

#: Every kind of :class:`Fault` the server knows.
FAULT_KINDS: frozenset[str] = frozenset(
    {
        "status",
        "html",
        "business",
        "non_json",
        "truncated",
        "close",
        "reset",
        "slow",
        "raw",
        "envelope",
        "redirect",
        "gzip",
    }
)

_HTML_TEMPLATE = "<html><body><h1>{status} {phrase}</h1></body></html>"
_NON_JSON_BODY = b"Internal error, please retry"
_TRUNCATED_FILLER = {"code": 0, "msg": "Success", "data": {"note": "the fake server cuts this body in half"}}


@dataclass
class Fault:
    """A deliberate misbehaviour of the fake server, applied to matching requests.

    Faults are checked in insertion order; the first one that matches the request and still has
    ``times`` left applies, and its count decreases (``times=None``: forever).

    Matching: ``method`` (case-insensitive, ``None`` = any) and ``path``. With ``path=None`` the
    fault matches every ``/v2`` API route; otherwise it matches when the request path, without the
    server's prefix and query, starts with ``path``. An explicit ``path`` may also target the
    storage routes (``/_storage/``, ``/assets/``, ``/files/``), e.g. to make an upload PUT fail.
    Admin routes (``/_fake/...``) are never faulted.

    Kinds:

    - ``status``: answer ``status`` (default 500) with the envelope ``{"code": status, ...}``.
    - ``html``: answer ``status`` (default 502) with an HTML gateway page (``text/html``).
    - ``business``: HTTP 200 with the envelope ``{"code": code, "msg": msg, "data": null}``.
    - ``non_json``: HTTP 200 with the plain-text body ``Internal error, please retry``.
    - ``truncated``: HTTP 200 announcing the Content-Length of a full JSON envelope, but only its
      first half is sent before the connection is closed.
    - ``close``: read the request, then close the connection without answering.
    - ``reset``: read the request, then abort the connection (SO_LINGER 0: the client sees a RST).
    - ``slow``: sleep ``delay`` seconds, then process the request and answer normally.
    - ``raw``: answer ``status`` (default 500) with ``body`` as is (``application/json``).
    - ``envelope``: answer ``status`` (default 200) with ``body`` as is, as JSON text.
    - ``redirect``: answer ``status`` (default 302) with ``Location: <location>`` and an empty body
      (a gateway or a moved host sending the client elsewhere).
    - ``gzip``: process the request and answer normally, but gzip the body and say
      ``Content-Encoding: gzip`` whatever the request's ``Accept-Encoding`` (a CDN that compresses
      media anyway); ``Content-Length`` is the compressed size.

    ``retry_after`` adds a ``Retry-After`` header to every kind that answers (except ``gzip``).
    ``delay`` (seconds) can be combined with any kind: the server waits that long before applying
    the fault.

    Except for ``slow``, a fault *replaces* the route handler: a faulted create call creates no
    task. With ``after_create=True`` the real handler runs first (so a create call really creates
    a task), then ``delay`` is waited and the fault replaces the answer: this simulates a task
    that was created although its answer was lost. For ``truncated`` the half-sent body is then
    the real answer. ``slow`` with ``after_create=True`` creates the task at once and answers
    after the delay (a client read timeout with a task that exists).
    """

    kind: str
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    status: int | None = None
    retry_after: str | None = None
    code: int = 50000
    msg: str = "System error"
    body: str | None = None
    delay: float = 0.0
    after_create: bool = False
    location: str | None = None

    def __post_init__(self) -> None:
        """Validate the fields (``ValueError`` / ``TypeError`` on a bad spec)."""
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.method is not None and not isinstance(self.method, str):
            raise TypeError("Fault.method must be a string or None")
        if self.path is not None and (not isinstance(self.path, str) or not self.path.startswith("/")):
            raise ValueError("Fault.path must be None or a path starting with '/'")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError("Fault.times must be None (forever) or an int >= 1")
        if self.status is not None and (
            isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 599
        ):
            raise ValueError("Fault.status must be None or an HTTP status between 100 and 599")
        if isinstance(self.retry_after, int) and not isinstance(self.retry_after, bool):
            self.retry_after = str(self.retry_after)
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise TypeError("Fault.retry_after must be a string, an int or None")
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError("Fault.code must be an int")
        if not isinstance(self.msg, str):
            raise TypeError("Fault.msg must be a string")
        if self.body is not None and not isinstance(self.body, str):
            raise TypeError("Fault.body must be a string or None")
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, float)) or self.delay < 0:
            raise ValueError("Fault.delay must be a number >= 0")
        if not isinstance(self.after_create, bool):
            raise TypeError("Fault.after_create must be a bool")
        if self.location is not None and not isinstance(self.location, str):
            raise TypeError("Fault.location must be a string or None")
        if self.kind == "redirect" and not self.location:
            raise ValueError("a 'redirect' fault needs a location")

    @property
    def effective_status(self) -> int:
        """The HTTP status this fault answers with (``status`` or the kind's default)."""
        if self.status is not None:
            return self.status
        if self.kind == "html":
            return 502
        if self.kind == "redirect":
            return 302
        if self.kind in ("status", "raw"):
            return 500
        return 200

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Fault:
        """Build a fault from a JSON-like mapping with the same field names (``ValueError`` if bad)."""
        if not isinstance(spec, Mapping):
            raise ValueError("a fault spec must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        if "kind" not in spec:
            raise ValueError("a fault spec needs a 'kind'")
        try:
            return cls(**dict(spec))
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """The fault as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def matches(self, method: str, path: str, *, api: bool) -> bool:
        """Whether this fault applies to a request (``api``: the path is a ``/v2`` route)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return api
        return path.startswith(self.path)


class _ActiveFault:
    """A fault registered on the server, with its remaining count."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


class FaultList:
    """The faults registered on a server, in order, each with the uses it has left (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_ActiveFault] = []

    def add(self, fault: Fault) -> None:
        """Register a copy of ``fault`` (applied after the ones already registered)."""
        with self._lock:
            self._faults.append(_ActiveFault(dataclasses.replace(fault)))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[Fault]:
        """The faults still active, with ``times`` set to what is left."""
        with self._lock:
            return [dataclasses.replace(active.fault, times=active.remaining) for active in self._faults]

    def take(self, method: str, path: str, *, api: bool) -> Fault | None:
        """Find the first matching fault with uses left and consume one use of it."""
        with self._lock:
            for index, active in enumerate(self._faults):
                if not active.fault.matches(method, path, api=api):
                    continue
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        del self._faults[index]
                return active.fault
        return None


def fault_response(fault: Fault) -> Response | None:
    """The complete answer of a fault that answers (``None`` for ``truncated``, ``reset``, ``close``,
    which the HTTP handler plays on the connection itself, and ``slow`` / ``gzip``, which answer normally)."""
    kind = fault.kind
    status = fault.effective_status
    extra: tuple[tuple[str, str], ...] = ()
    if fault.retry_after:
        extra = (("Retry-After", fault.retry_after),)
    if kind == "status":
        return json_response(status, envelope(status, reason(status)), extra)
    if kind == "html":
        html = _HTML_TEMPLATE.format(status=status, phrase=reason(status)).encode("utf-8")
        return Response(status, html, "text/html; charset=utf-8", extra)
    if kind == "business":
        return json_response(200, envelope(fault.code, fault.msg), extra)
    if kind == "non_json":
        return Response(200, _NON_JSON_BODY, "text/plain; charset=utf-8", extra)
    if kind == "redirect":
        return Response(status, b"", None, (("Location", fault.location or "/"), *extra))
    if kind in ("raw", "envelope"):
        body = (fault.body or "").encode("utf-8")
        return Response(status, body, "application/json", extra)
    return None


def truncated_body(real: Response | None) -> bytes:
    """The full body a ``truncated`` fault announces (the real answer's, if any), of which half is sent."""
    return real.body if real is not None and real.body else dumps(_TRUNCATED_FILLER)
