"""LipSyncBatchTrigger against the fake Jogg server: one trigger, one small event, the ledger kept."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg import registries
from airflow_provider_jogg.batch import ledger as states
from airflow_provider_jogg.batch.ledger import PAGE_SIZE, FilePages, Ledger, read_pages
from airflow_provider_jogg.protocol import STATUS_PATH
from airflow_provider_jogg.testing import FAILURE_MESSAGE
from airflow_provider_jogg.testing.server import FINISH_AFTER_POLL
from airflow_provider_jogg.triggers import lip_sync_batch
from airflow_provider_jogg.triggers.lip_sync import LipSyncTrigger
from airflow_provider_jogg.triggers.lip_sync_batch import LipSyncBatchTrigger
from tests.conftest import TEST_API_KEY

if TYPE_CHECKING:
    from pathlib import Path

STATUS = STATUS_PATH.format(task_id="")
FINGERPRINT = "fp-batch-1"
VIDEO = "https://m.example/v.mp4"
AUDIO = "https://m.example/a.mp3"
#: a task id the fake does not know: its status request answers code 10104
UNKNOWN_TASK = "00000000-0000-0000-0000-000000000000"


async def run_trigger(trigger: LipSyncBatchTrigger) -> list[dict]:
    """Drive run() to its end: it must yield exactly one event and then return."""
    return [event.payload async for event in trigger.run()]


def clip_names(n: int) -> list[str]:
    return [f"clip-{i:05d}" for i in range(n)]


def write_ledger(folder: Path, task_ids: list[str], fingerprint: str = FINGERPRINT) -> Ledger:
    """A batch's ledger as the operator leaves it when it defers: one created task per clip."""
    ledger = Ledger(clip_names(len(task_ids)), [FilePages(folder)], fingerprint)
    for clip, task_id in zip(ledger.records, task_ids, strict=True):
        ledger.update(clip, state=states.CREATED, task_id=task_id, creates=1)
    ledger.flush(all_pages=True)
    return ledger


def on_disk(folder: Path) -> Ledger:
    return read_pages(FilePages(folder), FINGERPRINT)


def polls_of(fake, task_id: str) -> int:
    return fake.count(path=STATUS_PATH.format(task_id=task_id))


def batch_trigger(folder: Path, **kwargs) -> LipSyncBatchTrigger:
    kwargs.setdefault("poll_interval", 0.02)
    return LipSyncBatchTrigger(ledger_location=str(folder), fingerprint=FINGERPRINT, **kwargs)


async def until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for a condition of the fake server or the ledger on disk (bounded, so a bug cannot hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


def test_serialization_is_exact_and_holds_no_key_nor_clip():
    trigger = LipSyncBatchTrigger(
        ledger_location="s3://bucket/out/manifest.csv.ledger",
        fingerprint="abc",
        jogg_conn_id="jogg_x",
        poll_interval=15,
        end_time=1700000000.5,
        not_before=1699990000.25,
        progress_interval=120,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_jogg.triggers.lip_sync_batch.LipSyncBatchTrigger"
    assert kwargs == {
        "ledger_location": "s3://bucket/out/manifest.csv.ledger",
        "fingerprint": "abc",
        "jogg_conn_id": "jogg_x",
        "poll_interval": 15.0,
        "end_time": 1700000000.5,
        "not_before": 1699990000.25,
        "progress_interval": 120.0,
    }
    assert LipSyncBatchTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert TEST_API_KEY not in repr(kwargs)


@pytest.mark.asyncio
async def test_every_clip_ends_in_one_done_event_and_the_ledger(jogg_conn, tmp_path):
    good = [jogg_conn.add_task(VIDEO, AUDIO) for _ in range(4)]
    bad = [jogg_conn.add_task("https://m.example/fail.mp4", AUDIO) for _ in range(2)]
    write_ledger(tmp_path, good + bad)

    events = await run_trigger(batch_trigger(tmp_path))

    assert events == [
        {"status": "done", "waiting": 0, "ended": 6, "message": "6 clips ended, 2 of them failed"}
    ]
    records = on_disk(tmp_path).records
    for clip, task_id in zip(clip_names(6), good + bad, strict=True):
        record = records[clip]
        assert record.task_id == task_id
        if task_id in good:
            assert (record.state, record.status, record.error) == (states.SUCCEEDED, "success", None)
            assert record.result_url.endswith(f"/files/{task_id}/result.mp4")
            assert record.duration_seconds == 12.5
        else:
            assert (record.state, record.status) == (states.FAILED, "failed")
            assert record.error == FAILURE_MESSAGE
            assert record.result_url is None
    assert jogg_conn.create_count == 0  # the trigger only polls


@pytest.mark.asyncio
async def test_a_clip_jogg_does_not_know_fails_alone(jogg_conn, tmp_path):
    good = [jogg_conn.add_task(VIDEO, AUDIO) for _ in range(2)]
    write_ledger(tmp_path, [good[0], UNKNOWN_TASK, good[1]])

    (event,) = await run_trigger(batch_trigger(tmp_path))

    assert event["status"] == "done"
    assert (event["ended"], event["message"]) == (3, "3 clips ended, 1 of them failed")
    records = on_disk(tmp_path).records
    assert [records[c].state for c in clip_names(3)] == [states.SUCCEEDED, states.FAILED, states.SUCCEEDED]
    failed = records["clip-00001"]
    assert failed.status == "error"
    assert "10104" in failed.error
    assert polls_of(jogg_conn, UNKNOWN_TASK) == 1  # a fatal answer is not asked again
    assert TEST_API_KEY not in json.dumps(event) + failed.error


@pytest.mark.asyncio
async def test_a_restarted_trigger_polls_only_the_clips_still_running(jogg_conn, tmp_path, monkeypatch):
    # ended clips reach the pages within a flush: a triggerer restart re-polls at most a flush's worth
    monkeypatch.setattr(lip_sync_batch, "FLUSH_SECONDS", 0.05)
    quick = [jogg_conn.add_task(VIDEO, AUDIO, status="success") for _ in range(6)]
    slow = [jogg_conn.add_task(VIDEO, AUDIO, status="processing") for _ in range(4)]
    write_ledger(tmp_path, quick + slow)

    first = asyncio.ensure_future(run_trigger(batch_trigger(tmp_path)))
    await until(
        lambda: len(list(on_disk(tmp_path).in_state(states.SUCCEEDED))) == 6,
        "the six quick clips to be flushed",
    )
    await until(lambda: all(polls_of(jogg_conn, t) >= 2 for t in slow), "the slow clips to be polled")
    first.cancel()  # the triggerer stops (a restart, or the trigger moves to another triggerer)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not registries.poll_schedulers()  # the cancelled wait left nothing polling

    jogg_conn.clear_requests()
    for task_id in slow:
        jogg_conn.set_task(task_id, "success")
    (event,) = await run_trigger(batch_trigger(tmp_path))  # the adopted trigger, same kwargs

    assert event == {"status": "done", "waiting": 0, "ended": 4, "message": "4 clips ended, 0 of them failed"}
    assert [polls_of(jogg_conn, t) for t in quick] == [0] * 6
    assert all(polls_of(jogg_conn, t) >= 1 for t in slow)
    records = on_disk(tmp_path).records
    assert all(r.state == states.SUCCEEDED for r in records.values())


@pytest.mark.asyncio
async def test_timeout_names_the_clips_still_running_and_keeps_what_ended(jogg_conn, tmp_path):
    ended = [jogg_conn.add_task(VIDEO, AUDIO, status="success") for _ in range(3)]
    running = [jogg_conn.add_task(VIDEO, AUDIO, status="processing") for _ in range(2)]
    write_ledger(tmp_path, ended + running)
    end_time = time.time() + 2.0

    (event,) = await run_trigger(batch_trigger(tmp_path, end_time=end_time))

    assert time.time() >= end_time
    assert event == {
        "status": "timeout",
        "waiting": 2,
        "ended": 3,
        "message": "2 clips were not finished by end_time",
    }
    records = on_disk(tmp_path).records
    assert [records[c].state for c in clip_names(5)] == [states.SUCCEEDED] * 3 + [states.CREATED] * 2
    assert all(polls_of(jogg_conn, t) >= 1 for t in running)


@pytest.mark.asyncio
async def test_no_poll_and_no_event_before_not_before(jogg_conn, tmp_path):
    tasks = [jogg_conn.add_task(VIDEO, AUDIO, status="success") for _ in range(3)]
    write_ledger(tmp_path, tasks)
    not_before = time.time() + 1.0

    (event,) = await run_trigger(batch_trigger(tmp_path, not_before=not_before))

    assert event["status"] == "done"
    assert time.time() >= not_before
    polls = [r for r in jogg_conn.requests if r.path.startswith(STATUS)]
    assert len(polls) == 3
    assert all(r.time >= not_before for r in polls), [r.time - not_before for r in polls]
    # an event that needs no request (an unreadable ledger) is held back as well
    broken = batch_trigger(tmp_path / "nowhere", not_before=time.time() + 0.5)
    (error,) = await run_trigger(broken)
    assert error["status"] == "error"
    assert time.time() >= broken.not_before


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["missing-folder", "corrupt-page", "other-batch", "unknown-scheme"])
async def test_an_unreadable_ledger_is_an_error_event(jogg_conn, tmp_path, damage):
    folder = tmp_path / "manifest.csv.ledger"
    location = str(folder)
    if damage != "missing-folder":
        write_ledger(folder, [jogg_conn.add_task(VIDEO, AUDIO)], fingerprint="fp-other")
    if damage == "corrupt-page":
        (folder / "page-00000.json").write_text('{"fingerprint": "fp-batch-1", "clips": {', encoding="utf-8")
    if damage == "unknown-scheme":  # a location no filesystem of the triggerer can open
        location = "nosuch://bucket/manifest.csv.ledger"

    events = await run_trigger(LipSyncBatchTrigger(location, FINGERPRINT, poll_interval=0.02))

    assert len(events) == 1
    event = events[0]
    assert event["status"] == "error"
    assert event["message"].startswith(f"The batch ledger at {location} could not be read: ")
    assert (event["waiting"], event["ended"]) == (0, 0)
    assert jogg_conn.count() == 0


@pytest.mark.asyncio
async def test_progress_is_logged_as_counts_and_an_eta_not_per_clip(jogg_conn, tmp_path, capfd):
    # clips end over about two seconds, one after another: a line per clip would be 30 lines
    tasks = [jogg_conn.add_task(f"{VIDEO}?{FINISH_AFTER_POLL}={0.05 * i:.2f}", AUDIO) for i in range(1, 31)]
    write_ledger(tmp_path, tasks)
    trigger = batch_trigger(tmp_path, poll_interval=0.05, progress_interval=0.4)

    started = time.monotonic()
    (event,) = await run_trigger(trigger)
    elapsed = time.monotonic() - started

    assert event["status"] == "done"
    logged = capfd.readouterr().out
    assert "Jogg batch: waiting for 30 clips (30 in the ledger); progress every 0 s" in logged
    lines = re.findall(r"Jogg batch: (\d+) of 30 done, (\d+) failed(, about \d+ s to go)?", logged)
    # one line per progress interval, and a last one when every clip ended
    assert 2 <= len(lines) <= elapsed / 0.4 + 2, lines
    assert lines[-1] == ("30", "0", "")
    done = [int(n) for n, _, _ in lines]
    assert done == sorted(done)
    assert any(eta for n, _, eta in lines if 0 < int(n) < 30), "no ETA while clips were running"
    for task_id in tasks:
        assert task_id not in logged  # counts, not a line per clip


@pytest.mark.asyncio
async def test_the_batch_shares_the_accounts_poll_scheduler(jogg_conn, tmp_path):
    clips = [jogg_conn.add_task(VIDEO, AUDIO, status="processing") for _ in range(3)]
    single = jogg_conn.add_task(VIDEO, AUDIO, status="processing")
    write_ledger(tmp_path, clips)

    batch = asyncio.ensure_future(run_trigger(batch_trigger(tmp_path)))
    alone = asyncio.ensure_future(run_trigger(LipSyncTrigger(jogg_task_id=single, poll_interval=0.02)))
    await until(lambda: all(polls_of(jogg_conn, t) >= 2 for t in [*clips, single]), "every task polled")

    schedulers = registries.poll_schedulers()
    assert len(schedulers) == 1  # one scheduler for the account: the batch's waits and the single one
    scheduler = next(iter(schedulers.values()))
    assert scheduler._waits == 4
    (session, users) = registries.aiohttp_leases()[jogg_conn.url]
    assert users == 1
    assert scheduler.client._session is session
    for task_id in [*clips, single]:
        jogg_conn.set_task(task_id, "success")
    (batch_event,), (single_event,) = await asyncio.gather(batch, alone)
    assert (batch_event["status"], batch_event["ended"], single_event["status"]) == ("done", 3, "success")
    assert not registries.poll_schedulers()
    assert jogg_conn.url not in registries.aiohttp_leases()


@pytest.mark.asyncio
async def test_trigger_row_and_event_do_not_grow_with_the_batch(jogg_conn, tmp_path):
    """10 and 10,000 clips: the same kwargs, and an event that differs only in its counts' digits."""
    sizes = {}
    for n, name in ((10, "small.ledger"), (10_000, "large.ledger")):
        folder = tmp_path / name
        write_ledger(folder, [f"task-{i}" for i in range(n)])  # never polled: the wait times out first
        # one decimal: both rows hold an end_time of the same length
        trigger = batch_trigger(folder, poll_interval=3600, end_time=round(time.time() + 0.5, 1))
        (event,) = await run_trigger(trigger)
        assert event == {
            "status": "timeout",
            "waiting": n,
            "ended": 0,
            "message": f"{n} clips were not finished by end_time",
        }
        sizes[n] = (len(json.dumps(trigger.serialize()[1])), len(json.dumps(event)))
    assert jogg_conn.count() == 0
    (row_small, event_small), (row_large, event_large) = sizes[10], sizes[10_000]
    assert row_small == row_large < 400
    # the counts appear twice in the event (field and message): 3 more digits each
    assert event_large - event_small == 2 * (len("10000") - len("10"))
    assert event_large < 200


def break_folder(folder: Path) -> Path:
    """The ledger folder stops taking writes: moved away, a plain file in its place."""
    moved = folder.with_name(folder.name + ".away")
    folder.rename(moved)
    folder.write_text("not a folder", encoding="utf-8")
    return moved


def repair_folder(folder: Path, moved: Path) -> None:
    folder.unlink()
    moved.rename(folder)


async def until_logged(capfd, run: asyncio.Future, text: str) -> str:
    """Wait until the trigger logged ``text`` (or ended); returns everything logged so far."""
    logged = ""

    def seen() -> bool:
        nonlocal logged
        logged += capfd.readouterr().out
        return text in logged or run.done()

    await until(seen, f"the log line {text!r}")
    return logged


@pytest.mark.asyncio
async def test_a_failed_ledger_write_is_tried_again_not_a_crash(jogg_conn, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(lip_sync_batch, "FLUSH_SECONDS", 0.05)
    folder = tmp_path / "manifest.csv.ledger"
    first, second = (jogg_conn.add_task(VIDEO, AUDIO, status="processing") for _ in range(2))
    # the two clips on two pages: the page that failed must be written again, not only the next one
    ledger = Ledger(clip_names(PAGE_SIZE + 1), [FilePages(folder)], FINGERPRINT)
    for clip in ledger.records:
        ledger.update(clip, state=states.SAVED)
    ledger.update("clip-00000", state=states.CREATED, task_id=first)
    ledger.update(f"clip-{PAGE_SIZE:05d}", state=states.CREATED, task_id=second)
    ledger.flush(all_pages=True)
    run = asyncio.ensure_future(run_trigger(batch_trigger(folder)))
    await until(lambda: polls_of(jogg_conn, first) >= 1, "the first poll")

    moved = break_folder(folder)
    jogg_conn.set_task(first, "success")  # ends while its page cannot be written
    logged = await until_logged(capfd, run, "Jogg batch: could not write the ledger")
    assert not run.done(), run.exception()
    repair_folder(folder, moved)
    jogg_conn.set_task(second, "success")
    (event,) = await run

    assert event == {"status": "done", "waiting": 0, "ended": 2, "message": "2 clips ended, 0 of them failed"}
    records = on_disk(folder).records  # the page that failed was written again: nothing lost
    assert records["clip-00000"].state == states.SUCCEEDED
    assert records[f"clip-{PAGE_SIZE:05d}"].state == states.SUCCEEDED
    assert f"could not write the ledger at {folder}" in logged
    assert TEST_API_KEY not in logged


@pytest.mark.asyncio
async def test_results_that_cannot_be_written_at_the_end_are_an_error_event(jogg_conn, tmp_path):
    folder = tmp_path / "manifest.csv.ledger"
    task_id = jogg_conn.add_task(VIDEO, AUDIO, status="processing")
    write_ledger(folder, [task_id])
    run = asyncio.ensure_future(run_trigger(batch_trigger(folder)))
    await until(lambda: polls_of(jogg_conn, task_id) >= 1, "the first poll")

    break_folder(folder)
    jogg_conn.set_task(task_id, "success")
    (event,) = await run

    # the operator is told, rather than reading a ledger that misses the end of its clips
    assert event["status"] == "error"
    assert (event["waiting"], event["ended"]) == (0, 1)
    written = f"1 clips ended but the batch ledger at {folder} could not be written: "
    assert event["message"].startswith(written)
