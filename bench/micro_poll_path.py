"""CPU per status poll of each layer of LipSyncTrigger's poll path, outside Airflow.

One asyncio loop, pinned to one core, ``--workers`` coroutines polling the status server back to
back (no sleeps: this isolates code-path cost from scheduling), ``--requests`` polls per variant,
CPU from ``time.process_time``. Variants, each adding one layer:

  lower bound     session(headers=H).get(url) + read + json.loads + status check
  +timeout        the same with the per-request ``timeout=ClientTimeout(total=30)`` the client passes
  +req headers    session.request("GET", url, headers=H, timeout=T, json=None): the client's call
  client.fetch_status  AsyncJoggClient.fetch_status, what a scheduler lane calls (throttle reservation, the
                  short path for a well-formed answer)
  lane            PollScheduler._poll: client.fetch_status plus the lane's bookkeeping (deadline check,
                  status comparison, next due time with jitter, the time bucket it goes into)

Run (a status server must be up): ``bench/.venv/bin/python bench/status_server.py --port 0 --cpu 1``
then ``bench/.venv/bin/python bench/micro_poll_path.py --port <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time


async def run_variant(name: str, make_poll, workers: int, requests: int) -> float:
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        poll = await make_poll(w)
        while done < requests:
            done += 1
            await poll()

    # warm-up (connections, caches)
    tasks = [asyncio.create_task(worker(w)) for w in range(workers)]
    await asyncio.gather(*tasks)
    done = 0
    t = time.process_time()
    tasks = [asyncio.create_task(worker(w)) for w in range(workers)]
    await asyncio.gather(*tasks)
    return (time.process_time() - t) / requests * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, list[float]]:
    import aiohttp

    from airflow_provider_jogg.connection import JoggConnectionConfig
    from airflow_provider_jogg.hooks.async_client import AsyncJoggClient
    from airflow_provider_jogg.triggers.polling import PollScheduler

    base = f"http://127.0.0.1:{args.port}"
    prefix = base + "/v2/lip_sync_video/"
    headers = {"x-api-key": "bench-key", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    session_h = aiohttp.ClientSession(headers=headers)
    session_plain = aiohttp.ClientSession()
    # a limit no run reaches: back-to-back polls go out at about 10,000/s, and a throttle that sleeps
    # would add its own wake-ups to the client and lane variants
    config = JoggConnectionConfig(base_url=base, api_key="bench-key", max_requests_per_second=1_000_000)
    client = AsyncJoggClient(config)
    await client.__aenter__()
    scheduler = PollScheduler.for_config(config)
    loop = asyncio.get_running_loop()
    loads = json.loads

    async def lower_bound(w: int):
        url = f"{prefix}t9-{w}"

        async def poll():
            async with session_h.get(url) as resp:
                body = await resp.read()
            return loads(body)["data"]["status"] in ("success", "failed")

        return poll

    async def with_timeout(w: int):
        url = f"{prefix}t9-{w}"

        async def poll():
            async with session_h.get(url, timeout=timeout) as resp:
                body = await resp.read()
            return loads(body)["data"]["status"] in ("success", "failed")

        return poll

    async def req_headers(w: int):
        url = f"{prefix}t9-{w}"

        async def poll():
            async with session_plain.request("GET", url, headers=headers, timeout=timeout, json=None) as resp:
                body = await resp.read()
            return loads(body)["data"]["status"] in ("success", "failed")

        return poll

    async def client_path(w: int):
        task = f"t9-{w}"

        async def poll():
            return (await client.fetch_status(task))["status"] in ("success", "failed")

        return poll

    async def lane(w: int):
        # a registered wait, polled by hand the way a lane polls it (its timer never fires: 1 h)
        wait = await scheduler.register(f"t9-{w}", 3600.0, time.time() + 7200)
        waits.append(wait)

        async def poll():
            wait.due = loop.time()
            await scheduler._poll(wait)
            wait.notes.clear()
            return False

        return poll

    variants = [
        ("lower bound", lower_bound),
        ("+timeout", with_timeout),
        ("+req headers", req_headers),
        ("client.fetch_status", client_path),
        ("lane", lane),
    ]
    waits: list = []
    out: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.rounds):
        for name, make in variants:
            out[name].append(await run_variant(name, make, args.workers, args.requests))
    await session_h.close()
    await session_plain.close()
    await client.__aexit__()
    for wait in waits:
        await scheduler.unregister(wait)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=100)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cpu", type=int, default=0)
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    out = asyncio.run(main_async(args))
    base = statistics.median(out["lower bound"])
    prev = None
    print(f"{'variant':16s} {'us/poll (median of rounds)':>28s} {'x lower bound':>14s} {'vs previous':>12s}")
    for name, values in out.items():
        med = statistics.median(values)
        delta = "" if prev is None else f"{med - prev:+.1f}"
        print(
            f"{name:16s} {med:28.1f} {med / base:14.2f} {delta:>12s}   "
            f"rounds: {', '.join(f'{v:.0f}' for v in values)}"
        )
        prev = med
    return 0


if __name__ == "__main__":
    sys.exit(main())
