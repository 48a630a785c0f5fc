"""airflow_provider_jogg.batch.ledger: per-clip records in pages, merged across stores."""

from __future__ import annotations

import json

import pytest

from airflow_provider_jogg.batch import ledger as states
from airflow_provider_jogg.batch.ledger import (
    ERROR_CHARS,
    PAGE_SIZE,
    FilePages,
    Ledger,
    StatePages,
    open_file_pages,
    page_size_for,
    read_pages,
)


class DictStore:
    """A task-state-store stand-in with the same get/set surface (the real one needs a running task)."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.sets = 0

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.sets += 1
        self.values[key] = json.loads(json.dumps(value))


def clips(n: int) -> list[str]:
    return [f"clip-{i:05d}" for i in range(n)]


def test_a_change_rewrites_only_its_page(tmp_path):
    ledger = Ledger(clips(PAGE_SIZE * 3), [FilePages(tmp_path)], "fp")
    changed = f"clip-{PAGE_SIZE + 10:05d}"  # on the second page
    ledger.update(changed, state=states.CREATED, task_id="t-x")
    ledger.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page-00001.json"]
    page = json.loads((tmp_path / "page-00001.json").read_text())
    assert page["fingerprint"] == "fp"
    assert page["clips"][changed] == {"clip": changed, "state": "created", "task_id": "t-x"}
    assert len(page["clips"]) == PAGE_SIZE


def test_a_full_page_stays_under_the_state_stores_size_warning():
    # Airflow 3.3 warns on every write of a value above [state_store] max_value_storage_bytes (64 KiB)
    ledger = Ledger(clips(PAGE_SIZE), [], "f" * 16)
    # URLs as long as Jogg's (https://res.jogg.ai/... with a task id in them)
    long = "https://res.jogg.ai/lipsync/3d5c6930-d0da-4f7b-826e-cd1530f6734f"
    for clip in ledger.records:
        ledger.update(
            clip,
            state=states.SAVED,
            task_id="3d5c6930-d0da-4f7b-826e-cd1530f6734f",
            inputs={"video_url": long + "/v.mp4", "audio_url": long + "/a.wav", "playback_type": "normal"},
            status="success",
            result_url=long + "/result.mp4",
            cover_url=long + "/cover.jpg",
            duration_seconds=12.5,
            output_path="s3://bucket/2026-12-02/clips/" + clip + ".mp4",
            creates=1,
        )
    assert len(json.dumps(ledger._content(0))) < 65_535


#: Airflow's [state_store] max_value_storage_bytes default: above it, a warning on every write
STATE_STORE_LIMIT = 65_535


def fill_worst_case(ledger: Ledger, inputs: dict[str, tuple[str, str]], output: int) -> None:
    """Every record as large as the ledger lets it grow: Jogg's URLs, an output path, a long error."""
    jogg = "https://res.jogg.ai/lipsync/3d5c6930-d0da-4f7b-826e-cd1530f6734f/" + "r" * 120
    for clip, (video, audio) in inputs.items():
        ledger.update(
            clip,
            state=states.FAILED,
            task_id="3d5c6930-d0da-4f7b-826e-cd1530f6734f",
            inputs={"video_url": video, "audio_url": audio, "playback_type": "normal_reverse_by_audio"},
            status="success",
            result_url=jogg + "/result.mp4",
            cover_url=jogg + "/cover.jpg",
            duration_seconds=1234.567,
            output_path="/" + "o" * (output - 1),
            error="E" * 5_000,  # kept to ERROR_CHARS
            creates=12,
        )


@pytest.mark.parametrize("url_chars", [60, 700, 3_000])
def test_pages_stay_under_the_state_stores_limit_whatever_the_inputs(url_chars):
    # presigned object-storage URLs run to hundreds of characters; a fixed 100 clips per page would
    # put a page of such records far above the limit
    rows = {
        f"clip-{i:05d}": (
            f"https://bucket.s3.amazonaws.com/v/{i}.mp4?" + "X" * url_chars,
            f"https://bucket.s3.amazonaws.com/a/{i}.wav?" + "Y" * url_chars,
        )
        for i in range(250)
    }
    size = page_size_for((clip, video, audio, None) for clip, (video, audio) in rows.items())
    assert 1 <= size <= PAGE_SIZE
    ledger = Ledger(list(rows), [], "f" * 16, size)
    fill_worst_case(ledger, rows, output=256)
    assert all(len(r.error or "") == ERROR_CHARS for r in ledger.records.values())
    pages = [json.dumps(ledger._content(page)) for page in range(ledger.page_count)]
    assert max(len(page) for page in pages) < STATE_STORE_LIMIT
    assert len(pages) == -(-250 // size)
    if url_chars == 60:  # not needlessly small: usual inputs share a page with dozens of others
        assert size >= 30


def test_the_triggers_view_pages_the_clips_as_the_operator_did(tmp_path):
    ledger = Ledger(clips(20), [FilePages(tmp_path)], "fp", page_size=7)
    ledger.update("clip-00015", state=states.CREATED, task_id="t-15")
    ledger.flush(all_pages=True)
    view = read_pages(FilePages(tmp_path), "fp")
    assert (view.page_size, view.page_count) == (7, 3)
    view.record_wait_error("clip-00015", "gone")
    view.flush()  # writes page 2 only, as the operator's ledger knows it
    again = Ledger(clips(20), [FilePages(tmp_path)], "fp", page_size=7)
    assert again.load() == 1
    assert again.records["clip-00015"].state == states.FAILED
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"page-0000{i}.json" for i in range(3)]


def test_a_new_ledger_reads_back_what_was_flushed(tmp_path):
    first = Ledger(clips(10), [FilePages(tmp_path)], "fp")
    first.update(
        "clip-00003", state=states.SENDING, inputs={"video_url": "https://v", "audio_url": "https://a"}
    )
    first.flush()
    second = Ledger(clips(10), [FilePages(tmp_path)], "fp")
    assert second.load() == 1
    record = second.records["clip-00003"]
    assert (record.state, record.inputs["video_url"]) == (states.SENDING, "https://v")


def test_pages_of_another_batch_are_ignored(tmp_path):
    old = Ledger(clips(3), [FilePages(tmp_path)], "old")
    old.update("clip-00000", state=states.CREATED, task_id="t")
    old.flush()
    new = Ledger(clips(3), [FilePages(tmp_path)], "new")
    assert new.load() == 0
    assert new.records["clip-00000"].state == states.NEW


def test_the_most_advanced_record_wins_across_stores(tmp_path):
    state, files = StatePages(DictStore()), FilePages(tmp_path)
    # the task state store has the create (the worker wrote it), the folder has the result (the triggerer)
    worker = Ledger(clips(2), [state, files], "fp")
    worker.update("clip-00000", state=states.CREATED, task_id="t0")
    worker.update("clip-00001", state=states.CREATED, task_id="t1")
    worker.flush()
    triggerer = read_pages(open_file_pages(tmp_path), "fp")
    triggerer.update("clip-00000", state=states.SUCCEEDED, result_url="https://r/0.mp4")
    triggerer.flush()
    merged = Ledger(clips(2), [state, files], "fp")
    merged.load()
    assert merged.records["clip-00000"].state == states.SUCCEEDED
    assert merged.records["clip-00000"].result_url == "https://r/0.mp4"
    assert merged.records["clip-00001"].state == states.CREATED


def test_a_record_only_the_state_store_kept_is_not_lost(tmp_path):
    state = StatePages(DictStore())
    worker = Ledger(clips(2), [state], "fp")
    worker.update("clip-00001", state=states.SENDING)
    worker.flush()
    resumed = Ledger(clips(2), [state, FilePages(tmp_path)], "fp")
    resumed.load()
    assert resumed.records["clip-00001"].state == states.SENDING


def test_a_failing_store_is_raised_after_the_others_were_written(tmp_path):
    class Broken:
        def load(self, page):
            return None

        def save(self, page, content):
            raise OSError("disk full")

        def describe(self):
            return "broken"

    ledger = Ledger(clips(2), [Broken(), FilePages(tmp_path)], "fp")
    ledger.update("clip-00000", state=states.SENDING)
    with pytest.raises(OSError, match="disk full"):
        ledger.flush()
    assert (tmp_path / "page-00000.json").exists()


def test_the_triggerers_view_needs_no_clip_list(tmp_path):
    ledger = Ledger(clips(PAGE_SIZE + 5), [FilePages(tmp_path)], "fp")
    for clip in ("clip-00000", f"clip-{PAGE_SIZE + 4:05d}"):
        ledger.update(clip, state=states.CREATED, task_id=f"t-{clip}")
    ledger.flush(all_pages=True)  # as the operator does before it defers
    view = read_pages(open_file_pages(str(tmp_path)), "fp")
    assert list(view.records) == clips(PAGE_SIZE + 5)
    assert [r.clip for r in view.in_state(states.CREATED)] == ["clip-00000", f"clip-{PAGE_SIZE + 4:05d}"]


def test_no_pages_is_an_error_for_the_triggerer(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ledger pages"):
        read_pages(open_file_pages(tmp_path), "fp")


def test_the_state_store_pages_are_kept_under_their_own_keys():
    raw = DictStore()
    ledger = Ledger(clips(PAGE_SIZE + 1), [StatePages(raw)], "fp")
    ledger.update(f"clip-{PAGE_SIZE:05d}", state=states.CREATED, task_id="t")
    ledger.flush()
    assert list(raw.values) == ["jogg_batch_page_1"]
    assert raw.values["jogg_batch_page_1"]["clips"][f"clip-{PAGE_SIZE:05d}"]["task_id"] == "t"


def test_a_page_that_failed_to_be_written_is_written_by_the_next_flush(tmp_path):
    class FlakyOnce(FilePages):
        failed = False

        def save(self, page, content):
            if not self.failed:
                self.failed = True
                raise OSError("storage blip")
            super().save(page, content)

    ledger = Ledger(clips(3), [FlakyOnce(tmp_path)], "fp")
    ledger.update("clip-00001", state=states.CREATED, task_id="t1")
    with pytest.raises(OSError, match="storage blip"):
        ledger.flush()
    ledger.flush()  # nothing changed since: the failed page alone is written again
    assert read_pages(open_file_pages(tmp_path), "fp").records["clip-00001"].task_id == "t1"
