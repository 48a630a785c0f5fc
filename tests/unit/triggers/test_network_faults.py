"""Network faults between the triggerer and Jogg, with many waits at once.

A hundred ``LipSyncTrigger`` waits run in Airflow's own ``TriggerRunner`` (its ``create_triggers``,
``run_trigger`` and ``cleanup_finished_triggers``, in this test's event loop, without the supervisor
process and its database) against the fake Jogg server, through a :class:`FaultProxy` for the
network faults and with the fake server's own faults for broken answers. Every wait first polls
over a healthy network; then the fault is injected and stays until every wait has failed
``FAILED_POLLS`` polls in a row (the Jogg tasks finish meanwhile); then it heals. Every wait must
then end with exactly one ``success`` event, before its ``end_time``; the counts (faults injected,
waits that survived, were lost, got a duplicate event) are printed and recorded as test properties
for ``docs/reliability.md``.

The create call is checked through the proxy as well: a reset or stall after the request was sent
gives ``JoggCreateUncertainError`` with exactly one task created (billed once); a refused connection
is retried and creates exactly one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from airflow_provider_jogg._compat import AIRFLOW_V_3_3_PLUS
from airflow_provider_jogg.events import EventStatus, parse_event
from airflow_provider_jogg.exceptions import JoggConnectionError, JoggCreateUncertainError
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.testing import Fault, FaultProxy
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from tests.conftest import TEST_API_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

    from airflow.triggers.base import BaseTrigger

    from airflow_provider_jogg.testing import FakeJoggServer

#: waits in one event loop, as one busy triggerer holds them
WAITS = 100
#: seconds between two polls of a wait: 100 waits make about the default rate limit (100 per second)
POLL_INTERVAL = 1.0
#: the connection's per-request timeout: generous, so that only a stall (or a machine so busy that
#: the fake server falls behind, which is retried like any timeout) makes a request time out
REQUEST_TIMEOUT = 10.0
#: the per-request timeout where a stall is the fault: a stalled answer fails after this
STALL_TIMEOUT = 2.0
#: failed polls in a row each wait sees before the fault heals
FAILED_POLLS = 3
#: the waits' end_time is this far ahead: far more than any fault here needs to heal
WAIT_SECONDS = 240.0
STATUS = STATUS_PATH.format(task_id="")
VIDEO = "https://media.example/clip.mp4"
AUDIO = "https://media.example/voice.mp3"
#: a fault of the fake server that never runs out while it is injected
UNTIL_HEALED = 1_000_000
#: a complete HTTP answer whose JSON stops in the middle
HALF_AN_ENVELOPE = '{"code": 0, "msg": "Success", "data": {"sta'
BROKEN_CONNECTION = "the connection failed before a complete answer arrived"
TIMED_OUT = "no complete answer within the"
_POLL_FAILED = re.compile(
    r"^Jogg task (?P<task>\S+): poll failed .*? next poll in [\d.]+ s: (?P<error>.*)$", re.S
)
_STATUS = re.compile(r"^Jogg task (?P<task>\S+) is (?P<status>\w+) ")


# --------------------------------------------------------------------------------------------------
# What the waits log, and Airflow's trigger runner in this event loop
# --------------------------------------------------------------------------------------------------
class WaitLog:
    """
    What the waits log, per Jogg task: the statuses they saw, and their failed polls
    (``Jogg task <id>: poll failed ...: <error>``). A structlog processor: the trigger logs through
    structlog, as in a real triggerer.
    """

    def __init__(self) -> None:
        self.statuses: dict[str, list[str]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self._waiting: list[tuple[Callable[[], bool], asyncio.Event, asyncio.AbstractEventLoop]] = []

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> Any:
        message = str(event_dict.get("event", ""))
        if match := _POLL_FAILED.match(message):
            self.errors[match["task"]].append(match["error"])
        elif match := _STATUS.match(message):
            self.statuses[match["task"]].append(match["status"])
        for _, _, loop in self._waiting:
            loop.call_soon_threadsafe(self._check)
        raise structlog.DropEvent

    def _check(self) -> None:
        for condition, event, _ in self._waiting:
            if condition():
                event.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds (checked whenever a wait logs)."""
        done = asyncio.Event()
        waiting = (condition, done, asyncio.get_running_loop())
        self._waiting.append(waiting)
        try:
            self._check()
            await done.wait()
        finally:
            self._waiting.remove(waiting)

    def failed_polls(self, since: dict[str, int] | None = None) -> dict[str, list[str]]:
        """The errors per task, only those after ``since`` (a :meth:`mark`) if given."""
        since = since or {}
        return {task: errors[since.get(task, 0) :] for task, errors in self.errors.items()}

    def mark(self) -> dict[str, int]:
        return {task: len(errors) for task, errors in self.errors.items()}


@contextlib.contextmanager
def watch_waits() -> Iterator[WaitLog]:
    log = WaitLog()
    # in place, not with structlog.configure(): Airflow caches loggers on first use, and a cached
    # logger keeps the processor list it was built with; so every logger sees this one only while
    # the test runs, and none is left dropping its events after it
    processors = structlog.get_config()["processors"]
    processors.insert(0, log)
    try:
        yield log
    finally:
        processors.remove(log)


class Triggerer:
    """
    Airflow's ``TriggerRunner`` in this event loop: triggers go in as ``RunTrigger`` workloads
    (serialized, kwargs encrypted as the scheduler stores them) and run in ``run_trigger``; the events
    and failures are what the runner would send to its supervisor.
    """

    def __init__(self) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.runner = TriggerRunner()
        self.events: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.failures: dict[int, list[str]] = {}

    async def add(self, triggers: dict[int, BaseTrigger]) -> None:
        from airflow.executors.workloads import RunTrigger
        from airflow.models.trigger import Trigger

        for trigger_id, trigger in triggers.items():
            classpath, kwargs = trigger.serialize()
            encrypted = Trigger.encrypt_kwargs(kwargs)  # as the scheduler stores them
            workload = RunTrigger(id=trigger_id, classpath=classpath, encrypted_kwargs=encrypted)
            self.runner.to_create.append(workload)
        await self.runner.create_triggers()

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [details["task"] for details in self.runner.triggers.values()]

    async def until(self, condition: Coroutine[Any, Any, None]) -> None:
        """Wait for ``condition``, or until a trigger ends (the test then says what went wrong)."""
        waiting = asyncio.ensure_future(condition)
        try:
            await asyncio.wait([waiting, *self.tasks()], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    async def wait_all(self, end_time: float) -> None:
        """Wait until every trigger has ended (each ends itself at its end_time at the latest)."""
        pending = self.tasks()
        if pending:
            # the margin is for the runner, not for the waits: they must end by end_time themselves
            _, still = await asyncio.wait(pending, timeout=max(end_time - time.time(), 0) + 30)
            assert not still, f"{len(still)} triggers did not end by their end_time"
        await self.runner.cleanup_finished_triggers()
        changes = self.runner.process_trigger_events(finished_ids=[])
        for entry in changes.events or []:
            self.events[entry.trigger_id].append(entry.event.payload)
        for trigger_id, traceback in changes.failures or []:
            self.failures[trigger_id] = traceback or []

    async def cancel_all(self) -> None:
        tasks = self.tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------------------------------
# The faults
# --------------------------------------------------------------------------------------------------
def answer_split(server: FakeJoggServer, task_id: str) -> tuple[int, int]:
    """Bytes of the headers and of the body of a status answer, read straight from the server."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"GET {STATUS}{task_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {TEST_API_KEY}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return len(head) + 4, len(body)


@dataclass(frozen=True)
class NetworkFault:
    """One fault: how to inject it, the causes its failed polls name, how to heal and count it."""

    name: str
    #: every wait's failed polls name the first; any failed poll names one of these
    causes: tuple[str, ...]
    inject: Callable[[FaultProxy, FakeJoggServer, str], None]
    #: heals, and returns how many requests the fault hit (None: count the polls that named it)
    heal: Callable[[FaultProxy, FakeJoggServer], int | None]
    timeout: float = REQUEST_TIMEOUT


def _proxy_heal(counter: str | None) -> Callable[[FaultProxy, FakeJoggServer], int | None]:
    def heal(proxy: FaultProxy, server: FakeJoggServer) -> int | None:
        proxy.heal()
        return None if counter is None else getattr(proxy.stats, counter)

    return heal


def _server_fault(fault: Fault) -> Callable[[FaultProxy, FakeJoggServer, str], None]:
    def inject(proxy: FaultProxy, server: FakeJoggServer, task_id: str) -> None:
        server.add_fault(fault)

    return inject


def _server_heal(proxy: FaultProxy, server: FakeJoggServer) -> int | None:
    (left,) = server.faults
    server.clear_faults()
    assert left.times is not None
    return UNTIL_HEALED - left.times


def _reset_in_body(proxy: FaultProxy, server: FakeJoggServer, task_id: str) -> None:
    head, body = answer_split(server, task_id)
    proxy.inject("reset", after_bytes=head + body // 2)


NETWORK_FAULTS = [
    NetworkFault(
        "reset-in-headers",
        (BROKEN_CONNECTION,),
        lambda proxy, server, task_id: proxy.inject("reset", after_bytes=12),
        _proxy_heal("resets"),
    ),
    NetworkFault("reset-in-body", (BROKEN_CONNECTION,), _reset_in_body, _proxy_heal("resets")),
    NetworkFault(
        "stall-past-timeout",
        (f"{TIMED_OUT} {STALL_TIMEOUT:g} s timeout",),
        lambda proxy, server, task_id: proxy.inject("stall", after_bytes=0),
        _proxy_heal("stalls"),
        timeout=STALL_TIMEOUT,
    ),
    NetworkFault(
        "connection-refused",
        # kept-alive connections are closed when the listener goes: a poll racing that close fails
        # with a broken connection, every later one is refused
        ("could not connect", BROKEN_CONNECTION),
        lambda proxy, server, task_id: proxy.inject("refuse"),
        _proxy_heal(None),
    ),
    NetworkFault(
        "502-html",
        ("HTTP status: 502",),
        _server_fault(Fault("html", status=502, path=STATUS, times=UNTIL_HEALED)),
        _server_heal,
    ),
    NetworkFault(
        "truncated-body",
        (BROKEN_CONNECTION,),
        _server_fault(Fault("truncated", path=STATUS, times=UNTIL_HEALED)),
        _server_heal,
    ),
    NetworkFault(
        "truncated-json",
        ("a body that is not JSON",),
        _server_fault(Fault("envelope", path=STATUS, body=HALF_AN_ENVELOPE, times=UNTIL_HEALED)),
        _server_heal,
    ),
]


# --------------------------------------------------------------------------------------------------
# Waits through faults
# --------------------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="drives the internals of Airflow 3.3's TriggerRunner (workload fields, event processing, "
    "trigger log routing), which earlier lines lay out differently; the trigger code under test is "
    "the same on every line",
)
@pytest.mark.parametrize("fault", NETWORK_FAULTS, ids=[f.name for f in NETWORK_FAULTS])
async def test_many_waits_survive_a_network_fault(fault, fake_jogg, set_conn, record_property):
    task_ids = [fake_jogg.add_task(VIDEO, AUDIO) for _ in range(WAITS)]
    for task_id in task_ids:
        fake_jogg.set_task(task_id, "processing")  # until the test says otherwise
    with FaultProxy(fake_jogg.url) as proxy, watch_waits() as log:
        set_conn("jogg_default", proxy.url, timeout=fault.timeout)
        end_time = time.time() + WAIT_SECONDS
        triggerer = Triggerer()
        triggers: dict[int, BaseTrigger] = {
            index + 1: LipSyncTrigger(jogg_task_id=task_id, poll_interval=POLL_INTERVAL, end_time=end_time)
            for index, task_id in enumerate(task_ids)
        }
        try:
            await triggerer.add(triggers)
            # healthy first: every wait has polled, over kept-alive connections
            await triggerer.until(log.until(lambda: log.statuses.keys() >= set(task_ids)))
            fault.inject(proxy, fake_jogg, task_ids[0])
            before = log.mark()

            def each_failed_enough() -> bool:
                failed = log.failed_polls(before)
                return all(len(failed.get(task_id, ())) >= FAILED_POLLS for task_id in task_ids)

            # the fault stays until every wait has failed FAILED_POLLS times in a row; meanwhile the
            # Jogg tasks finish (Jogg works on while the network to it is broken)
            await triggerer.until(log.until(each_failed_enough))
            for task_id in task_ids:
                fake_jogg.set_task(task_id, "success")
            ended_during_fault = sum(task.done() for task in triggerer.tasks())
            injected = fault.heal(proxy, fake_jogg)
            during_fault = log.failed_polls(before)
            await triggerer.wait_all(end_time)
        finally:
            await triggerer.cancel_all()
    errors = [error for errors in during_fault.values() for error in errors]
    if injected is None:  # refused connections never reach the proxy: count the polls that saw them
        injected = sum(fault.causes[0] in error for error in errors)

    assert ended_during_fault == 0, "a wait ended while its polls failed"
    # every wait met this fault, and named it
    assert all(any(fault.causes[0] in error for error in during_fault.get(t, [])) for t in task_ids)
    # nothing else went wrong, except a timeout when a busy machine slows the fake server down
    unexplained = {e for e in errors if not any(cause in e for cause in (*fault.causes, TIMED_OUT))}
    assert not unexplained
    assert injected >= WAITS, f"the fault hit {injected} requests, fewer than there are waits"
    assert triggerer.failures == {}, "a trigger crashed or ended without an event"
    survived = duplicated = 0
    for trigger_id, trigger in triggers.items():
        events = triggerer.events.get(trigger_id, [])
        duplicated += len(events) > 1
        parsed = [parse_event(payload) for payload in events]
        if [event.status for event in parsed] == [EventStatus.SUCCESS]:
            assert parsed[0].result is not None
            assert parsed[0].result.task_id == trigger.jogg_task_id  # type: ignore[attr-defined]
            survived += 1
    lost = WAITS - survived - duplicated
    counts = {"injected": injected, "survived": survived, "lost": lost, "duplicated": duplicated}
    for name, value in counts.items():
        record_property(name, value)
    print(f"network fault {fault.name}, {WAITS} waits: {counts}")
    assert (survived, lost, duplicated) == (WAITS, 0, 0), counts
    assert fake_jogg.create_count == 0
    assert TEST_API_KEY not in repr(dict(triggerer.events))


# --------------------------------------------------------------------------------------------------
# The create call through the same faults
# --------------------------------------------------------------------------------------------------
CREATE_CUTS = [
    pytest.param("reset", 0, "resets", BROKEN_CONNECTION, REQUEST_TIMEOUT, id="reset-before-the-answer"),
    pytest.param("reset", 12, "resets", BROKEN_CONNECTION, REQUEST_TIMEOUT, id="reset-in-headers"),
    pytest.param("reset", "body", "resets", BROKEN_CONNECTION, REQUEST_TIMEOUT, id="reset-in-body"),
    pytest.param("stall", 0, "stalls", TIMED_OUT, STALL_TIMEOUT, id="stall-past-timeout"),
]


@pytest.mark.parametrize(("kind", "after", "counter", "cause", "timeout"), CREATE_CUTS)
def test_create_cut_after_sending_is_uncertain_and_billed_once(
    kind, after, counter, cause, timeout, fake_jogg, set_conn
):
    from airflow_provider_jogg.hooks.jogg import JoggHook

    with FaultProxy(fake_jogg.url) as proxy:
        set_conn("jogg_default", proxy.url, timeout=timeout)
        if after == "body":
            # a create answer has the headers of a status answer and a body of more than 10 bytes
            head, _ = answer_split(fake_jogg, fake_jogg.add_task(VIDEO, AUDIO))
            after = head + 10
        before = len(fake_jogg.tasks)
        proxy.inject(kind, after_bytes=after, times=1)
        with pytest.raises(JoggCreateUncertainError) as info:
            JoggHook().create_lip_sync_video(VIDEO, AUDIO)
        assert getattr(proxy.stats, counter) == 1  # the fault really cut the answer
        assert proxy.fault is None  # used up: a second request would have passed
        assert len(proxy.connections) == 1
    assert fake_jogg.create_count == 1  # sent once, never again
    assert len(fake_jogg.tasks) == before + 1  # the task exists: it may be billed, once
    assert isinstance(info.value.cause, JoggConnectionError)
    assert cause in str(info.value)
    assert "may have been created" in str(info.value)
    assert TEST_API_KEY not in str(info.value)


class _HealOnRetry(logging.Handler):
    """Heals the proxy when the hook announces its first retry: the second attempt goes through."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(logging.WARNING)
        self.proxy = proxy
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying in" in message:
            self.retries.append(message)
            self.proxy.heal()


def test_create_refused_connection_is_retried_and_creates_once(fake_jogg, set_conn):
    from airflow_provider_jogg.hooks.jogg import JoggHook

    hook_log = logging.getLogger("airflow_provider_jogg.retry")
    with FaultProxy(fake_jogg.url) as proxy:
        set_conn("jogg_default", proxy.url, timeout=REQUEST_TIMEOUT)
        proxy.inject("refuse")
        healer = _HealOnRetry(proxy)
        hook_log.addHandler(healer)
        try:
            task_id = JoggHook().create_lip_sync_video(VIDEO, AUDIO)
        finally:
            hook_log.removeHandler(healer)
        assert proxy.stats.refusals == 1
        assert len(proxy.connections) == 1  # the attempt after the refusal
    assert len(healer.retries) == 1
    assert "could not connect" in healer.retries[0]
    assert fake_jogg.create_count == 1
    assert list(fake_jogg.tasks) == [task_id]
