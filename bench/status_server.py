"""A fast status server for the trigger benchmark: Jogg, dbt Cloud and plain-HTTP status routes.

One asyncio process on 127.0.0.1, optionally pinned to one core. A raw ``asyncio.Protocol`` parses
HTTP/1.1 with keep-alive (no framework in the request path), answers every poll from memory and
records when each task was polled, so lateness is measured where the polls land, not where they
are sent.

Routes that the triggers poll (``{tag}`` is the integer tag of one measurement, ``{i}`` a task index):

``GET /v2/lip_sync_video/t{tag}-{i}``
    the Jogg envelope ``{"code":0,"msg":"Success","data":{"task_id":..,"status":"processing"|"success",..}}``
    (LipSyncTrigger, the shared-aiohttp lower bound and the shared-httpx reference)
``GET /api/v2/accounts/{tag}/runs/{i}/``
    dbt Cloud's run route: ``{"data":{"id":i,"status":3}}`` while running, ``10`` once done
    (DbtCloudRunJobTrigger)
``GET /http/t{tag}-{i}``
    404 while running, 200 once done (HttpSensorTrigger fires on the first non-404 answer)

A task is "processing" until its completion time (``complete_at`` of its tag, plus ``i/n *
spread``), then finished. With ``--rate-limit R`` the poll routes answer 429 with ``Retry-After``
above R requests per second (token bucket, burst R).

Control routes (never rate-limited, never recorded): ``/_bench/ping``,
``/_bench/register?tag=&n=&complete_at=&spread=[&rate=&retry_after=]``, ``/_bench/complete?tag=&at=``,
``/_bench/stats?tag=&t0=&t1=&interval=``, ``/_bench/forget?tag=``.

Run: ``python bench/status_server.py --port 0 --cpu 1`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import signal
import sys
import time
from urllib.parse import parse_qsl, unquote

INF = float("inf")

_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 400: b"Bad Request"}


def _response(status: int, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"X")),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            extra,
            b"Connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        )
    )


class Run:
    """One measurement: its tasks' poll times and completion schedule."""

    __slots__ = ("complete_at", "n", "polls", "rejected", "spread")

    def __init__(self, n: int, complete_at: float, spread: float) -> None:
        self.n = n
        self.complete_at = complete_at
        self.spread = spread
        # task index -> times (time.time()) of the polls answered 200/404 (not 429)
        self.polls: dict[int, list[float]] = {}
        # times of the polls answered 429
        self.rejected: list[float] = []

    def done_at(self, i: int) -> float:
        if self.complete_at == INF:
            return INF
        return self.complete_at + (i / max(self.n, 1)) * self.spread


class State:
    def __init__(self, rate_limit: float, retry_after: str) -> None:
        self.runs: dict[int, Run] = {}
        self.conn_times: list[float] = []  # accept times of TCP connections (time.time())
        self.open_conns = 0
        self.max_open_conns = 0
        self.rate = rate_limit
        self.tokens = rate_limit
        self.last_refill = time.monotonic()
        self.retry_after = retry_after.encode()
        self.unknown = 0

    def run(self, tag: int) -> Run:
        run = self.runs.get(tag)
        if run is None:  # a poll for an unregistered tag: record it anyway, never finishes
            run = self.runs[tag] = Run(0, INF, 0.0)
        return run

    def allow(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last_refill) * self.rate)
        self.last_refill = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


STATE: State


def _task_index(text: bytes) -> tuple[int, int] | None:
    """``t{tag}-{i}`` -> (tag, i)."""
    if not text.startswith(b"t"):
        return None
    tag, sep, idx = text[1:].partition(b"-")
    if not sep:
        return None
    try:
        return int(tag), int(idx)
    except ValueError:
        return None


_JOGG_PREFIX = b"/v2/lip_sync_video/"
_DBT_PREFIX = b"/api/v2/accounts/"
_HTTP_PREFIX = b"/http/"


def handle_poll(path: bytes, close: bool) -> bytes | None:
    """Answer a poll route, or None if ``path`` is not one."""
    state = STATE
    if path.startswith(_JOGG_PREFIX):
        kind = 0
        key = _task_index(path[len(_JOGG_PREFIX) :])
    elif path.startswith(_DBT_PREFIX):
        kind = 1
        parts = path[len(_DBT_PREFIX) :].split(b"/")  # {tag}/runs/{i}/
        try:
            key = (int(parts[0]), int(parts[2])) if len(parts) >= 3 and parts[1] == b"runs" else None
        except ValueError:
            key = None
    elif path.startswith(_HTTP_PREFIX):
        kind = 2
        key = _task_index(path[len(_HTTP_PREFIX) :])
    else:
        return None
    if key is None:
        state.unknown += 1
        return _response(404, b'{"code":10104,"msg":"record not found","data":null}', close=close)
    tag, i = key
    run = state.run(tag)
    now = time.time()
    if not state.allow():
        run.rejected.append(now)
        return _response(
            429,
            b'{"code":429,"msg":"Too Many Requests","data":null}',
            b"Retry-After: " + state.retry_after + b"\r\n",
            close,
        )
    times = run.polls.get(i)
    if times is None:
        run.polls[i] = [now]
    else:
        times.append(now)
    done = now >= run.done_at(i)
    if kind == 0:
        task_id = b"t%d-%d" % (tag, i)
        if done:
            body = (
                b'{"code":0,"msg":"Success","data":{"task_id":"%s","status":"success",'
                b'"data":{"result_url":"https://res.example/%s.mp4","cover_url":"https://res.example/%s.jpg",'
                b'"duration_seconds":12.5},"created_at":1741500000,"completed_at":%d}}'
                % (task_id, task_id, task_id, int(now))
            )
        else:
            body = (
                b'{"code":0,"msg":"Success","data":{"task_id":"%s","status":"processing",'
                b'"created_at":1741500000}}' % task_id
            )
        return _response(200, body, close=close)
    if kind == 1:
        body = b'{"status":{"code":200,"is_success":true},"data":{"id":%d,"account_id":%d,"status":%d}}' % (
            i,
            tag,
            10 if done else 3,
        )
        return _response(200, body, close=close)
    if done:
        return _response(200, b'{"status":"done"}', close=close)
    return _response(404, b'{"status":"running"}', close=close)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def stats(tag: int, t0: float, t1: float, interval: float) -> dict:
    """What the server saw for one measurement between t0 and t1 (time.time())."""
    run = STATE.runs.get(tag)
    out: dict = {"tag": tag, "t0": t0, "t1": t1, "interval": interval}
    if run is None:
        out.update(polls=0, tasks_registered=0)
        return out
    polls = 0
    lateness: list[float] = []
    max_gap = 0.0
    tasks_polled = 0
    for times in run.polls.values():
        prev = None
        seen = False
        for t in times:
            if t0 <= t <= t1:
                polls += 1
                seen = True
                if prev is not None:
                    gap = t - prev
                    lateness.append(gap - interval)
                    max_gap = max(max_gap, gap)
            prev = t
        tasks_polled += seen
    rejected = sum(1 for t in run.rejected if t0 <= t <= t1)
    conns = sum(1 for t in STATE.conn_times if t0 <= t <= t1)
    lateness.sort()
    span = t1 - t0
    out.update(
        tasks_registered=run.n,
        polls=polls,
        rejected_429=rejected,
        requests=polls + rejected,
        share_429=(rejected / (polls + rejected)) if polls + rejected else 0.0,
        tasks_polled=tasks_polled,
        gaps=len(lateness),
        lateness_p50=_percentile(lateness, 0.50),
        lateness_p99=_percentile(lateness, 0.99),
        lateness_max=lateness[-1] if lateness else None,
        max_gap=max_gap if lateness else None,
        new_connections=conns,
        polls_per_s=polls / span if span > 0 else 0.0,
        server_max_open_conns=STATE.max_open_conns,
    )
    return out


def handle_control(path: bytes) -> bytes:
    text = unquote(path.decode("latin-1"))
    route, _, query = text.partition("?")
    q = dict(parse_qsl(query))
    state = STATE
    try:
        if route == "/_bench/ping":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            body = {"ok": True, "pid": os.getpid(), "cpu": ru.ru_utime + ru.ru_stime}
        elif route == "/_bench/register":
            tag = int(q["tag"])
            state.runs[tag] = Run(
                int(q.get("n", 0)), float(q.get("complete_at", "inf")), float(q.get("spread", 0))
            )
            state.max_open_conns = state.open_conns
            if "rate" in q:  # requests/s for the poll routes from now on (0: unlimited)
                state.rate = state.tokens = float(q["rate"])
            if "retry_after" in q:
                state.retry_after = q["retry_after"].encode()
            body = {"ok": True}
        elif route == "/_bench/complete":
            run = state.run(int(q["tag"]))
            run.complete_at = float(q.get("at", time.time()))
            run.spread = float(q.get("spread", run.spread))
            body = {"ok": True}
        elif route == "/_bench/stats":
            body = stats(int(q["tag"]), float(q["t0"]), float(q["t1"]), float(q["interval"]))
        elif route == "/_bench/timeline":  # polls (and 429s) per whole second, for diagnosis
            run = state.run(int(q["tag"]))
            counts: dict[int, list[int]] = {}
            for times in run.polls.values():
                for t in times:
                    counts.setdefault(int(t), [0, 0])[0] += 1
            for t in run.rejected:
                counts.setdefault(int(t), [0, 0])[1] += 1
            body = {"per_second": sorted([k, v[0], v[1]] for k, v in counts.items())}
        elif route == "/_bench/forget":
            state.runs.pop(int(q["tag"]), None)
            cutoff = time.time() - 600
            state.conn_times = [t for t in state.conn_times if t >= cutoff]
            gc.collect()
            body = {"ok": True}
        else:
            return _response(404, b'{"error":"unknown control route"}')
    except (KeyError, ValueError) as error:
        return _response(400, json.dumps({"error": repr(error)}).encode())
    return _response(200, json.dumps(body).encode())


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("buf", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""
        state = STATE
        state.conn_times.append(time.time())
        state.open_conns += 1
        if state.open_conns > state.max_open_conns:
            state.max_open_conns = state.open_conns

    def connection_lost(self, exc: Exception | None) -> None:
        STATE.open_conns -= 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ")
            lower = head.lower()
            body_len = 0
            pos = lower.find(b"\r\ncontent-length:")
            if pos >= 0:
                stop = lower.find(b"\r\n", pos + 2)
                try:
                    body_len = int(lower[pos + 17 : stop if stop >= 0 else None].strip())
                except ValueError:
                    body_len = 0
            if len(buf) < end + 4 + body_len:
                break  # wait for the body
            buf = buf[end + 4 + body_len :]
            close = b"\r\nconnection: close" in lower
            if len(parts) < 2:
                out.append(_response(400, b"{}", close=True))
                close = True
                break
            path = parts[1]
            if path.startswith(b"/_bench/"):
                out.append(handle_control(path))
            else:
                answer = handle_poll(path, close)
                out.append(answer if answer is not None else _response(404, b'{"code":404}', close=close))
            if close:
                break
        self.buf = buf
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close or len(self.buf) > 1 << 20:
            self.transport.close()


async def serve(host: str, port: int, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to that core")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="requests/s before answering 429")
    parser.add_argument("--retry-after", default="1", help="Retry-After value of a 429")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the bench server only listens on loopback")
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    global STATE
    STATE = State(args.rate_limit, args.retry_after)
    gc.freeze()

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.port, stop)

    asyncio.run(runner())
    return 0


if __name__ == "__main__":
    sys.exit(main())
