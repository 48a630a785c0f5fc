"""Summarise runner profiles taken by ``run.py --profile pyspy|cprofile``.

py-spy (``--format raw``, collapsed stacks, root first)::

    bench/.venv/bin/python bench/profile_summary.py bench/results/profile-X-lip_sync-n5000-i5.txt \\
        --polls 20000 [--compare bench/results/profile-X-aiohttp_shared-n5000-i5.txt --compare-polls 20000]

prints where the samples go: by area (aiohttp, asyncio loop, greenback portal, provider code,
Airflow triggerer housekeeping, logging, json, ...), the top self-time functions, and, with
``--polls``, microseconds of CPU per poll for each area (samples / rate / polls).

cProfile (``.prof``): prints the top functions by total and cumulative time plus call counts,
which give exact calls per poll with ``--polls``.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import re
import sys

#: (area, regex on "function (file:line)"), first match from the leaf upward wins for self time
AREAS = [
    ("provider: trigger", r"airflow_provider_jogg/triggers/"),
    ("provider: hook/client", r"airflow_provider_jogg/hooks/"),
    ("provider: parse, throttle, retry", r"airflow_provider_jogg/(protocol|results|throttle|retry)"),
    ("provider: other", r"airflow_provider_jogg/"),
    ("bench trigger", r"bench_triggers\.py"),
    (
        "logging (structlog/stdlib)",
        r"structlog/|logging/__init__|airflow/sdk/log|_shared/logging|secrets_masker",
    ),
    ("json", r"json/|msgspec"),
    ("tenacity", r"tenacity/"),
    (
        "aiohttp: client/session",
        r"aiohttp/client\.py|aiohttp/client_reqrep|aiohttp/helpers|aiohttp/cookiejar|aiohttp/tracing",
    ),
    ("aiohttp: connector/pool", r"aiohttp/connector"),
    (
        "aiohttp: protocol/parser/streams",
        r"aiohttp/client_proto|aiohttp/http_|aiohttp/streams|aiohttp/base_protocol|aiohttp/_http",
    ),
    ("aiohttp: other", r"aiohttp/"),
    ("yarl/multidict", r"yarl/|multidict/"),
    ("httpx/httpcore/anyio", r"httpx/|httpcore/|anyio/|h11/"),
    ("greenback/outcome portal", r"greenback/|outcome/"),
    (
        "Airflow triggerer housekeeping",
        r"airflow/jobs/triggerer_job_runner|airflow/sdk/execution_time/comms|pydantic|airflow/triggers/",
    ),
    ("Airflow other", r"airflow/"),
    ("asyncio loop, timers, sockets", r"asyncio/|selectors\.py|socket\.py|ssl\.py"),
    ("bench probe", r"LoopProbeTrigger"),
]
_COMPILED = [(name, re.compile(rx)) for name, rx in AREAS]
_LINE = re.compile(r"^(.*) (\d+)$")


def area_of(frame: str) -> str | None:
    for name, rx in _COMPILED:
        if rx.search(frame):
            return name
    return None


def load_pyspy(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if m:
                stacks.append((m.group(1).split(";"), int(m.group(2))))
    return stacks


#: leaf frames of a thread that waits (not CPU): the loop's epoll_wait, idle executor threads
IDLE_LEAVES = (
    "EpollSelector.select (selectors.py",
    "_worker (concurrent/futures/thread.py",
    "wait (threading.py",
)


def summarise_pyspy(path: str, polls: int | None, rate: float, top: int) -> dict[str, float]:
    stacks = [(f, c) for f, c in load_pyspy(path) if not f[-1].startswith(IDLE_LEAVES)]
    total = sum(c for _, c in stacks)
    by_area: collections.Counter[str] = collections.Counter()
    by_self: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        # self time goes to the innermost frame that belongs to a known area; anything else
        # (C functions without a Python file) to the area of the nearest caller
        area = None
        for frame in reversed(frames):
            area = area_of(frame)
            if area:
                break
        by_area[area or "other"] += count
        by_self[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"\n== {path}: {total} samples" + (f", {polls} polls" if polls else ""))
    scale = (1e6 / rate / polls) if polls else None
    print(f"{'area (self time)':42s} {'share':>7s}" + ("  us/poll" if scale else ""))
    out = {}
    for area, count in by_area.most_common():
        us = count * scale if scale else None
        out[area] = us if us is not None else count / total
        print(f"{area:42s} {count / total * 100:6.1f}%" + (f" {us:8.1f}" if scale else ""))
    print(f"\ntop {top} functions by self samples:")
    for frame, count in by_self.most_common(top):
        print(f"  {count / total * 100:5.1f}%  {frame}")
    print(f"\ntop {top} provider/bench frames by inclusive samples:")
    shown = 0
    for frame, count in inclusive.most_common():
        if "airflow_provider_jogg" in frame or "bench_triggers" in frame:
            print(
                f"  {count / total * 100:5.1f}%"
                + (f" {count * scale:7.1f} us/poll" if scale else "")
                + f"  {frame}"
            )
            shown += 1
            if shown >= top:
                break
    return out


def summarise_cprofile(path: str, polls: int | None, top: int) -> None:
    stats = pstats.Stats(path)
    print(f"\n== {path}: {stats.total_tt:.3f} s profiled" + (f", {polls} polls" if polls else ""))
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{func} ({file.split('site-packages/')[-1]}:{line})"))
    print(f"\ntop {top} by own time" + ("   [calls per poll]" if polls else ""))
    for tt, _ct, nc, name in sorted(rows, reverse=True)[:top]:
        print(
            f"  {tt * 1000:8.1f} ms  {nc:>9d} calls"
            + (f"  {nc / polls:6.2f}/poll" if polls else "")
            + f"  {name}"
        )
    print(f"\ntop {top} by cumulative time (provider and bench frames)")
    for _tt, ct, nc, name in sorted(((r[1], r[0], r[2], r[3]) for r in rows), reverse=True):
        if "airflow_provider_jogg" in name or "bench_triggers" in name:
            print(
                f"  {ct * 1000:8.1f} ms  {nc:>9d} calls"
                + (f"  {nc / polls:6.2f}/poll" if polls else "")
                + f"  {name}"
            )
            top -= 1
            if top <= 0:
                break


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("--polls", type=int, default=None, help="polls answered in the profiled window")
    p.add_argument("--rate", type=float, default=250.0, help="py-spy sampling rate used (run.py: 250)")
    p.add_argument("--compare", default=None, help="a second py-spy profile (e.g. the lower bound)")
    p.add_argument("--compare-polls", type=int, default=None)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    if args.profile.endswith(".prof"):
        summarise_cprofile(args.profile, args.polls, args.top)
        return 0
    a = summarise_pyspy(args.profile, args.polls, args.rate, args.top)
    if args.compare:
        b = summarise_pyspy(args.compare, args.compare_polls, args.rate, args.top)
        if args.polls and args.compare_polls:
            print(f"\n{'area':42s} {'first':>9s} {'second':>9s} {'diff':>9s}  (us per poll)")
            for area in sorted(set(a) | set(b), key=lambda k: -(a.get(k, 0) - b.get(k, 0))):
                print(
                    f"{area:42s} {a.get(area, 0):9.1f} {b.get(area, 0):9.1f} "
                    f"{a.get(area, 0) - b.get(area, 0):9.1f}"
                )
            print(
                f"{'total':42s} {sum(a.values()):9.1f} {sum(b.values()):9.1f} "
                f"{sum(a.values()) - sum(b.values()):9.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
