"""
The batch's credit budget: estimated from real audio files (made with the dev extra's ffmpeg),
checked against ``max_credits`` and the remaining quota that the fake Jogg server answers.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg._compat import AirflowFailException
from airflow_provider_jogg.batch.budget import (
    NAMED_UNKNOWN,
    BatchEstimate,
    check_budget,
    check_max_credits,
    estimate_batch,
)
from airflow_provider_jogg.hooks.jogg import JoggHook
from tests.conftest import TEST_API_KEY
from tests.media_binaries import FFMPEG

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Row:
    """A manifest row as the estimate sees it."""

    clip: str
    audio: Any
    video: Any = "https://cdn.example.com/clip.mp4"


def make_audio(path: Path, seconds: float) -> Path:
    """A real audio file of ``seconds`` (8 kHz: long clips stay small; the codec follows the name)."""
    done = subprocess.run(
        [
            FFMPEG, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=8000:duration={seconds}", str(path),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def dubs(tmp_path_factory) -> dict[str, Path]:
    """25 s, 50 s and 125 s of audio: 0.2, 0.4 and 1 credit (Jogg: 1 credit per 125 s)."""
    folder = tmp_path_factory.mktemp("dubs")
    return {
        "short": make_audio(folder / "short.wav", 25),
        "medium": make_audio(folder / "medium.mp3", 50),
        "long": make_audio(folder / "long.m4a", 125),
    }


@pytest.fixture
def measured_rows(dubs) -> list[Row]:
    return [Row(f"clip-{name}", path) for name, path in dubs.items()]


def test_the_estimate_sums_the_audio_of_every_clip(measured_rows):
    estimate = estimate_batch(measured_rows)
    assert (estimate.known, estimate.unknown, estimate.remote) == (3, 0, 0)
    assert estimate.seconds == pytest.approx(200, abs=0.1)
    assert estimate.credits == pytest.approx(1.6, abs=0.001)
    assert not estimate.is_lower_bound
    assert estimate.unknown_clips == ()
    assert estimate.describe().startswith("about 1.6")
    assert estimate.describe().endswith(" credits for 3 of 3 clips (200.0 s of audio)")
    assert json.loads(json.dumps(estimate.to_dict()))["lower_bound"] is False


def test_the_output_follows_the_audio_not_the_video(dubs):
    """A lip-synced video is as long as its audio: a long video does not raise the estimate."""
    estimate = estimate_batch([Row("clip", dubs["short"], video=dubs["long"])])
    assert estimate.seconds == pytest.approx(25, abs=0.1)


def test_an_estimate_within_the_cap_and_the_quota_passes(measured_rows, caplog):
    estimate = estimate_batch(measured_rows)
    with caplog.at_level(logging.INFO, logger="airflow_provider_jogg.batch.budget"):
        check_budget(estimate, max_credits=2, remaining_quota=1.6)  # exactly the quota still fits
        check_budget(estimate, max_credits=None, remaining_quota=None)
    assert "within max_credits=2 and a remaining quota of 1.6" in caplog.text
    assert "within max_credits=none and a remaining quota of unknown" in caplog.text


def test_over_the_cap_is_refused_with_the_figures(measured_rows):
    estimate = estimate_batch(measured_rows)
    with pytest.raises(exc.JoggBudgetError) as raised:
        check_budget(estimate, max_credits=1.5, remaining_quota=1000)
    error = raised.value
    assert str(error) == (
        "The batch needs about 1.6 credits for 3 of 3 clips (200.0 s of audio), above max_credits=1.5; "
        "nothing was created."
    )
    assert isinstance(error, exc.JoggFatalError)
    assert isinstance(error, AirflowFailException)  # no Airflow retry: the next try costs the same
    assert (error.credits, error.max_credits, error.remaining_quota) == (estimate.credits, 1.5, 1000)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.credits, copy.max_credits, copy.remaining_quota) == (
        str(error),
        error.credits,
        1.5,
        1000,
    )


def test_over_the_accounts_remaining_quota_is_refused(measured_rows, jogg_conn):
    jogg_conn.remaining_quota = 1.25
    quota = JoggHook().get_remaining_quota()  # GET /v2/user/remaining_quota on the fake server
    estimate = estimate_batch(measured_rows)
    with pytest.raises(exc.JoggBudgetError) as raised:
        check_budget(estimate, max_credits=None, remaining_quota=quota)
    assert str(raised.value) == (
        "The batch needs about 1.6 credits for 3 of 3 clips (200.0 s of audio), "
        "above the account's remaining quota of 1.25 credits; nothing was created."
    )
    assert jogg_conn.create_count == 0
    assert TEST_API_KEY not in str(raised.value)
    assert TEST_API_KEY not in repr(raised.value)


def test_over_both_names_both(measured_rows):
    with pytest.raises(exc.JoggBudgetError, match=r"above max_credits=1 and above the account's remaining"):
        check_budget(estimate_batch(measured_rows), max_credits=1, remaining_quota=0.5)


def test_clips_that_cannot_be_measured_are_counted_and_named(dubs, tmp_path, caplog):
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(random.Random(5).randbytes(10_000))
    remote = [Row(f"remote-{i:02}", f"https://cdn.example.com/dubs/{i}.mp3") for i in range(22)]
    rows = [
        Row("clip-long", dubs["long"]),
        *remote,
        Row("missing", tmp_path / "missing.mp3"),
        Row("noise", garbage),
        Row("clip-short", dubs["short"]),
    ]
    estimate = estimate_batch(rows, workers=4)
    assert (estimate.known, estimate.unknown, estimate.remote, estimate.clips) == (2, 24, 22, 26)
    assert estimate.is_lower_bound
    assert estimate.credits == pytest.approx(1.2, abs=0.001)
    assert len(estimate.unknown_clips) == NAMED_UNKNOWN
    assert estimate.unknown_clips == tuple(row.clip for row in remote[:NAMED_UNKNOWN])  # in batch order
    described = estimate.describe()
    assert described.startswith("at least 1.2 credits for 2 of 26 clips (150.0 s of audio); 24 clips not ")
    assert "(22 http(s) inputs, not fetched; 2 files whose duration could not be read)" in described
    assert described.endswith("remote-19 and 4 more")

    with pytest.raises(exc.JoggBudgetError) as raised:
        check_budget(estimate, max_credits=1, remaining_quota=None)
    message = str(raised.value)
    assert message.startswith("The batch needs at least 1.2 credits for 2 of 26 clips")
    assert message.endswith(
        "above max_credits=1; nothing was created. The estimate is a lower bound: "
        "the clips not measured cost more."
    )

    # within the cap, the check cannot prove the batch fits: it passes and says so
    with caplog.at_level(logging.WARNING, logger="airflow_provider_jogg.batch.budget"):
        check_budget(estimate, max_credits=5, remaining_quota=None)
    assert "The credit estimate is a lower bound: 24 of 26 clips could not be measured." in caplog.text


def test_one_unreadable_file_is_named_in_the_singular(tmp_path):
    estimate = estimate_batch([Row("only", tmp_path / "missing.wav")])
    assert estimate.describe() == (
        "at least 0 credits for 0 of 1 clip (0.0 s of audio); 1 clip not measured "
        "(1 file whose duration could not be read): only"
    )


def test_durations_are_read_concurrently_by_at_most_workers_threads():
    """Every round of reads waits for ``workers`` of them: fewer threads could never pass the barrier."""
    workers = 3
    barrier = threading.Barrier(workers, timeout=60)  # a guard against a hang, not a measurement
    lock = threading.Lock()
    in_flight = peak = 0

    def duration_of(location: Any) -> float:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        barrier.wait()
        with lock:
            in_flight -= 1
        return 125.0

    estimate = estimate_batch(
        [Row(f"c{i}", f"/dubs/{i}.wav") for i in range(9)], duration_of=duration_of, workers=workers
    )
    assert peak == workers
    assert (estimate.known, estimate.credits) == (9, 9.0)


def test_an_empty_batch_costs_nothing():
    estimate = estimate_batch([])
    assert estimate == BatchEstimate(credits=0.0, seconds=0.0, known=0, unknown=0)
    check_budget(estimate, max_credits=1, remaining_quota=0)


@pytest.mark.parametrize("workers", [0, -1, True, 2.5, "8"])
def test_workers_must_be_a_positive_whole_number(workers):
    with pytest.raises(exc.JoggConfigError, match=r"workers must be a whole number of at least 1, got"):
        estimate_batch([Row("a", "/a.wav")], workers=workers)


@pytest.mark.parametrize("value", [0, -5, True, "10", float("nan"), float("inf")])
def test_max_credits_must_be_a_positive_number(value):
    with pytest.raises(
        exc.JoggConfigError, match=r"max_credits must be a positive number of credits or None"
    ):
        check_budget(
            BatchEstimate(credits=1, seconds=125, known=1, unknown=0), max_credits=value, remaining_quota=None
        )


def test_max_credits_accepts_whole_and_decimal_numbers():
    assert check_max_credits(None) is None
    assert check_max_credits(10) == 10.0
    assert check_max_credits(0.5) == 0.5
