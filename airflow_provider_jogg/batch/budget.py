"""A batch's credit budget: what its clips will cost, checked before the first create.

Jogg bills the output video, 1 credit per 125 s (:func:`~airflow_provider_jogg.results.credits_estimate`).
A lip-synced video is as long as its audio (``playback_type`` only decides how the video fills it),
so a clip's cost is estimated from its **audio**'s duration, read from the file's header
(:func:`~airflow_provider_jogg.batch.durations.media_duration`). What cannot be measured, http(s)
inputs (never fetched for an estimate) and files whose duration cannot be read, is left out and
counted: the estimate is then a lower bound, and says so.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch.durations import media_duration
from airflow_provider_jogg.media_inputs import is_http_url
from airflow_provider_jogg.results import credits_estimate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: how many of the clips that could not be measured an estimate names
NAMED_UNKNOWN = 20
#: durations read at once by default: header reads are small and mostly wait on storage
DEFAULT_WORKERS = 8


class BatchRow(Protocol):
    """What the estimate needs of a batch row (a manifest's ``ClipRow``): its name and its audio."""

    @property
    def clip(self) -> str: ...

    @property
    def audio(self) -> Any: ...


@dataclass(frozen=True)
class BatchEstimate:
    """
    The credits a batch needs, from the clips whose audio could be measured.

    :param credits: credits of the measured clips (Jogg: 1 per 125 s of output)
    :param seconds: audio seconds of the measured clips
    :param known: clips measured
    :param unknown: clips not measured (their cost is not in ``credits``)
    :param remote: of the ``unknown`` clips, those with an http(s) audio URL (not fetched)
    :param unknown_clips: the names of the first :data:`NAMED_UNKNOWN` clips not measured
    """

    credits: float
    seconds: float
    known: int
    unknown: int
    remote: int = 0
    unknown_clips: tuple[str, ...] = ()

    @property
    def clips(self) -> int:
        return self.known + self.unknown

    @property
    def is_lower_bound(self) -> bool:
        """Some clips could not be measured: the batch costs more than ``credits``."""
        return self.unknown > 0

    def describe(self) -> str:
        """``about 12.5 credits for 40 of 40 clips (1,562.5 s of audio)``, and what was not measured."""
        text = (
            f"{'at least' if self.is_lower_bound else 'about'} {_figure(self.credits)} credits "
            f"for {self.known} of {self.clips} clip{_s(self.clips)} ({self.seconds:,.1f} s of audio)"
        )
        if not self.unknown:
            return text
        unreadable = self.unknown - self.remote
        kinds = [f"{self.remote} http(s) input{_s(self.remote)}, not fetched"] if self.remote else []
        if unreadable:
            kinds.append(f"{unreadable} file{_s(unreadable)} whose duration could not be read")
        more = self.unknown - len(self.unknown_clips)
        names = ", ".join(self.unknown_clips) + (f" and {more} more" if more > 0 else "")
        return f"{text}; {self.unknown} clip{_s(self.unknown)} not measured ({'; '.join(kinds)}): {names}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for XCom or a result manifest."""
        return {
            "credits": self.credits,
            "seconds": self.seconds,
            "known": self.known,
            "unknown": self.unknown,
            "remote": self.remote,
            "unknown_clips": list(self.unknown_clips),
            "lower_bound": self.is_lower_bound,
        }


def estimate_batch(
    rows: Iterable[BatchRow],
    *,
    duration_of: Callable[[Any], float | None] = media_duration,
    workers: int = DEFAULT_WORKERS,
) -> BatchEstimate:
    """
    Estimate a batch's credits from its clips' audio durations, read ``workers`` at a time.

    :param rows: the batch's clips: objects with ``.clip`` (a name) and ``.audio`` (its location)
    :param duration_of: seconds of one audio location, ``None`` when unknown (must not raise for
        unreadable media; :func:`~airflow_provider_jogg.batch.durations.media_duration` does not)
    :param workers: durations read concurrently (threads); at least 1
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise exc.JoggConfigError(f"workers must be a whole number of at least 1, got {workers!r}.")
    rows = list(rows)
    if not rows:
        return BatchEstimate(credits=0.0, seconds=0.0, known=0, unknown=0)
    # threads, not processes: each read mostly waits on a disk or an object store
    with ThreadPoolExecutor(max_workers=min(workers, len(rows)), thread_name_prefix="jogg-duration") as pool:
        durations = list(pool.map(lambda row: duration_of(row.audio), rows))
    credits = seconds = 0.0
    known = remote = 0
    unknown_clips: list[str] = []
    for row, duration in zip(rows, durations, strict=True):
        if duration is None or not math.isfinite(duration) or duration < 0:
            remote += is_http_url(row.audio)
            if len(unknown_clips) < NAMED_UNKNOWN:
                unknown_clips.append(str(row.clip))
            continue
        known += 1
        seconds += duration
        credits += credits_estimate(duration) or 0.0
    return BatchEstimate(
        credits=round(credits, 4),
        seconds=round(seconds, 3),
        known=known,
        unknown=len(rows) - known,
        remote=remote,
        unknown_clips=tuple(unknown_clips),
    )


def check_budget(
    estimate: BatchEstimate, *, max_credits: float | None, remaining_quota: float | None
) -> None:
    """
    Refuse a batch that would not fit, before anything is created.

    :param estimate: what :func:`estimate_batch` found
    :param max_credits: the batch's cap, ``None`` for none
    :param remaining_quota: the account's credits left (``JoggHook.get_remaining_quota()``), ``None``
        when not checked
    :raises JoggBudgetError: the estimate is above the cap or the quota, with the figures
    :raises JoggConfigError: ``max_credits`` is not a positive number
    """
    cap = check_max_credits(max_credits)
    over = []
    if cap is not None and estimate.credits > cap:
        over.append(f"above max_credits={_figure(cap)}")
    if remaining_quota is not None and estimate.credits > remaining_quota:
        over.append(f"above the account's remaining quota of {_figure(remaining_quota)} credits")
    if over:
        summary = f"The batch needs {estimate.describe()}, {' and '.join(over)}; nothing was created."
        if estimate.is_lower_bound:
            summary += " The estimate is a lower bound: the clips not measured cost more."
        raise exc.JoggBudgetError(summary, estimate.credits, cap, remaining_quota)
    log.info(
        "The batch needs %s: within max_credits=%s and a remaining quota of %s.",
        estimate.describe(),
        "none" if cap is None else _figure(cap),
        "unknown" if remaining_quota is None else _figure(remaining_quota),
    )
    if estimate.is_lower_bound:
        log.warning(
            "The credit estimate is a lower bound: %s of %s clips could not be measured.",
            estimate.unknown,
            estimate.clips,
        )


def check_max_credits(value: Any) -> float | None:
    """``max_credits`` as a float: ``None`` (no cap) or a positive, finite number."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise exc.JoggConfigError(f"max_credits must be a positive number of credits or None, got {value!r}.")
    return float(value)


def _figure(value: float) -> str:
    """A credit figure as people read it: ``12.5``, ``1,250``, ``0.024``."""
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _s(count: int) -> str:
    return "" if count == 1 else "s"
