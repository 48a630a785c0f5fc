"""Run the trigger benchmark: one status server, one harness process per kind x N x interval.

Examples (from the repository root, with bench/.venv; ``make bench-quick`` / ``make bench`` do this)::

    bench/.venv/bin/python bench/run.py --quick                 # N=1,000 at 5 s, every kind (< 2 min)
    bench/.venv/bin/python bench/run.py --full                  # the whole matrix -> RESULTS.md, plot.png
    bench/.venv/bin/python bench/run.py --kinds lip_sync,aiohttp_shared --n 100,5000 --interval 10
    bench/.venv/bin/python bench/run.py --kinds lip_sync --n 5000 --interval 10 --window 60 \\
        --rate-limit 200 --conn-extra '{"max_requests_per_second": 200}'
    bench/.venv/bin/python bench/run.py --report bench/results/full.json   # table + plot again

Every run writes ``bench/results/<name>.json`` (all measurements plus machine and versions) and
prints the markdown table; ``--full`` (or ``--write-report``) also writes ``bench/RESULTS.md`` and
``bench/plot.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PY = sys.executable

KINDS = ["lip_sync", "aiohttp_shared", "http_sensor", "dbt_cloud", "httpx_shared"]
ALL_KINDS = [*KINDS, "lip_sync_batch", "lip_sync_default", "aiohttp_lockstep", "aiohttp_tick", "idle"]
LABELS = {
    "lip_sync": "LipSyncTrigger (ours)",
    "lip_sync_default": "LipSyncTrigger, default connection (100 req/s throttle)",
    "lip_sync_batch": "one LipSyncBatchTrigger for N clips (ours)",
    "aiohttp_shared": "shared aiohttp (lower bound)",
    "aiohttp_lockstep": "shared aiohttp, lockstep schedule",
    "aiohttp_tick": "shared aiohttp, spread on a 50 ms grid",
    "http_sensor": "HttpSensorTrigger",
    "dbt_cloud": "DbtCloudRunJobTrigger",
    "httpx_shared": "shared httpx (reference)",
    "idle": "idle triggers (never poll: Airflow's own cost)",
}
PEERS = ("http_sensor", "dbt_cloud")
#: default measurement window per poll interval: 2-3 polls of every task
DEFAULT_WINDOW = {1.0: 10.0, 5.0: 10.0, 10.0: 15.0}
QUICK = {"n": [1000], "interval": [5.0], "window": 4.0, "settle": 5.5}
FULL = [(10.0, [100, 1000, 5000, 10000]), (5.0, [100, 1000, 5000, 10000]), (1.0, [1000])]
#: extra measurements of a full run: the provider's default connection (its client-side throttle),
#: and the rate-limited scenario (server answers 429 above 200 requests/s)
FULL_EXTRA = [
    # the lower bound on the peers' lockstep schedule, and on ours rounded to a 50 ms grid
    {"kind": "aiohttp_tick", "n": 1000, "interval": 5.0, "window": 10.0},
    {"kind": "aiohttp_lockstep", "n": 1000, "interval": 5.0, "window": 10.0},
    {"kind": "aiohttp_lockstep", "n": 5000, "interval": 5.0, "window": 10.0},
    {"kind": "lip_sync_default", "n": 1000, "interval": 5.0, "window": 10.0},
    # what holding N triggers costs the runner before any poll (Airflow's housekeeping)
    {"kind": "idle", "n": 1000, "interval": 10.0, "window": 15.0},
    {"kind": "idle", "n": 10000, "interval": 10.0, "window": 15.0},
    {
        "kind": "lip_sync",
        "n": 5000,
        "interval": 10.0,
        "window": 60.0,
        "rate_limit": 200.0,
        "conn_extra": '{"max_requests_per_second": 200}',
    },
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Trigger benchmark runner (see bench/README.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N=1,000 at a 5 s interval, every kind")
    mode.add_argument(
        "--full", action="store_true", help="N=100..10,000 at 10 s and 5 s, plus 1 s at N=1,000"
    )
    mode.add_argument(
        "--report", metavar="RESULTS_JSON", help="only rebuild the table/plot from a results file"
    )
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {','.join(ALL_KINDS)}")
    p.add_argument("--n", default=None, help="comma list of trigger counts")
    p.add_argument("--interval", default=None, help="comma list of poll intervals (s)")
    p.add_argument("--window", type=float, default=None, help="measurement window (s); default per interval")
    p.add_argument("--settle", type=float, default=None, help="seconds between creation and window")
    p.add_argument("--rate-limit", type=float, default=0.0, help="server limit, requests/s (429 above)")
    p.add_argument("--retry-after", default="1", help="Retry-After seconds of the server's 429")
    p.add_argument(
        "--conn-extra",
        default=None,
        help='JSON extra for the jogg_default connection (default: {"max_requests_per_second": 5000} '
        "for lip_sync, {} for lip_sync_default)",
    )
    p.add_argument("--complete", action="store_true", help="after the window, finish all tasks, count events")
    p.add_argument(
        "--profile", choices=("pyspy", "cprofile"), default=None, help="profile the runner in the window"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole sequence this many times (interleaved rounds); the table shows medians",
    )
    p.add_argument("--name", default=None, help="results file name (default: quick/full/custom-<time>)")
    p.add_argument("--write-report", action="store_true", help="also write RESULTS.md and plot.png")
    p.add_argument("--runner-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1)
    return p.parse_args(argv)


def matrix(args: argparse.Namespace) -> list[dict]:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in ALL_KINDS:
            raise SystemExit(f"unknown kind {k!r}; choose from {', '.join(ALL_KINDS)}")
    if args.n or args.interval or not (args.quick or args.full):
        ns = [int(x) for x in (args.n or "1000").split(",")]
        intervals = [float(x) for x in (args.interval or "5").split(",")]
        plan = [(i, ns) for i in intervals]
    elif args.quick:
        plan = [(i, QUICK["n"]) for i in QUICK["interval"]]
    else:
        plan = FULL
    configs = []
    for interval, ns in plan:
        window = args.window or (
            QUICK["window"] if args.quick else DEFAULT_WINDOW.get(interval, max(10.0, 2 * interval))
        )
        for n, kind in itertools.product(ns, kinds):
            configs.append(
                {
                    "kind": kind,
                    "n": n,
                    "interval": interval,
                    "window": window,
                    "rate_limit": args.rate_limit,
                    "conn_extra": args.conn_extra,
                }
            )
    if args.full and not (args.n or args.interval):
        configs += [dict(c) for c in FULL_EXTRA]
    # whole rounds, so that the repeats of one configuration see different moments of the machine
    return [dict(c, rep=r) for r in range(max(1, args.repeat)) for c in configs]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int, int]:
    # the rate limit is set per measurement (harness -> /_bench/register?rate=)
    cmd = [
        PY,
        str(HERE / "status_server.py"),
        "--port",
        "0",
        "--cpu",
        str(args.server_cpu),
        "--retry-after",
        args.retry_after,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"status server did not start: {line!r}")
    return proc, int(line.split()[1]), proc.pid


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in (
        "apache-airflow",
        "apache-airflow-task-sdk",
        "apache-airflow-providers-http",
        "apache-airflow-providers-dbt-cloud",
        "aiohttp",
        "httpx",
        "airflow-provider-jogg",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def machine() -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def run_all(args: argparse.Namespace) -> Path:
    configs = matrix(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "logs").mkdir(exist_ok=True)
    name = args.name or (
        "quick"
        if args.quick
        else "full"
        if args.full
        else "custom-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    server, port, server_pid = start_server(args)
    started = time.time()
    doc = {
        "name": name,
        "started": datetime.now(timezone.utc).isoformat(),
        "argv": sys.argv[1:],
        "machine": machine(),
        "versions": versions(),
        "results": [],
    }
    out_path = RESULTS / f"{name}.json"
    tag0 = int(time.time()) % 100000 * 100
    print(
        f"status server pid {server_pid} on 127.0.0.1:{port}, core {args.server_cpu}; "
        f"{len(configs)} measurements",
        flush=True,
    )
    try:
        for number, cfg in enumerate(configs, 1):
            label = f"{cfg['kind']}-n{cfg['n']}-i{cfg['interval']:g}" + (
                f"-r{cfg['rep']}" if args.repeat > 1 else ""
            )
            tmp = RESULTS / "logs" / f"{name}-{label}.json"
            cmd = [
                PY,
                str(HERE / "harness.py"),
                "--kind",
                cfg["kind"],
                "--n",
                str(cfg["n"]),
                "--interval",
                str(cfg["interval"]),
                "--window",
                str(cfg["window"]),
                "--port",
                str(port),
                "--server-pid",
                str(server_pid),
                "--tag",
                str(tag0 + number),
                "--out",
                str(tmp),
                "--runner-cpu",
                str(args.runner_cpu),
                "--supervisor-cpu",
                str(args.server_cpu),
                "--rate-limit",
                str(cfg.get("rate_limit") or 0.0),
                "--retry-after",
                args.retry_after,
            ]
            if cfg.get("conn_extra"):
                cmd += ["--conn-extra", cfg["conn_extra"]]
            if cfg.get("rate_limit"):
                label += f"-rl{cfg['rate_limit']:g}"
                tmp = RESULTS / "logs" / f"{name}-{label}.json"
                cmd[cmd.index("--out") + 1] = str(tmp)
            settle = args.settle if args.settle is not None else (QUICK["settle"] if args.quick else None)
            if settle is not None:
                cmd += ["--settle", str(settle)]
            if args.complete:
                cmd.append("--complete")
            if args.profile:
                ext = "txt" if args.profile == "pyspy" else "prof"
                cmd += [
                    "--profile",
                    args.profile,
                    "--profile-out",
                    str(RESULTS / f"profile-{name}-{label}.{ext}"),
                ]
            budget = 150 + 4 * cfg["interval"] + cfg["window"] + (60 if args.complete else 0)
            t = time.time()
            with open(RESULTS / "logs" / f"{name}-{label}.log", "w") as log:
                # own session: on timeout the harness and its forked runner go together
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    rc = proc.wait(timeout=budget)
                except subprocess.TimeoutExpired:
                    rc = "timeout"
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            try:
                result = json.loads(tmp.read_text())
                tmp.unlink()
            except (OSError, ValueError):
                result = {**cfg, "error": f"harness exit {rc}, see results/logs/{name}-{label}.log"}
            result["label"] = LABELS[cfg["kind"]]
            result["rep"] = cfg["rep"]
            doc["results"].append(result)
            out_path.write_text(json.dumps(doc, indent=1, default=str))
            print(f"[{number}/{len(configs)}] {label}: {short(result)} ({time.time() - t:.0f} s)", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    doc["seconds"] = time.time() - started
    out_path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"done in {doc['seconds']:.0f} s -> {out_path.relative_to(HERE.parent)}", flush=True)
    return out_path


def short(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    return (
        f"{fmt(r.get('cpu_ms_per_poll'), 3)} ms/poll, {fmt_pct(r.get('polls_ratio'))} of polls, "
        f"late p99 {fmt(r.get('lateness_p99_s'), 2)} s, cpu {fmt_pct(r.get('runner_cpu_util'))}, "
        f"runqueue wait {fmt_pct(r.get('runner_runqueue_wait'))}"
        + (f", 429 {fmt_pct(r.get('share_429'), 2)}" if r.get("rate_limit") else "")
        + (f", FAILURES {r['failures']}" if r.get("failures") else "")
    )


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def fmt(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (v != v):
        return "-"
    return f"{v:,.{digits}f}"


def fmt_pct(v, digits=0) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f} %"


def merged(doc: dict) -> list[dict]:
    """One row per configuration: the median of each number over its repeats (``--repeat``)."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in doc["results"]:
        key = (
            r.get("kind"),
            r.get("n"),
            r.get("interval"),
            r.get("rate_limit") or 0.0,
            json.dumps(r.get("conn_extra") or {}, sort_keys=True),
        )
        groups.setdefault(key, []).append(r)
    rows = []
    for group in groups.values():
        ok = [r for r in group if "error" not in r]
        if len(ok) <= 1:
            rows.append(ok[0] if ok else group[0])
            continue
        row = dict(ok[0])
        for k, v in ok[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values = [
                    r[k] for r in ok if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                ]
                row[k] = statistics.median(values)
        row["repeats"] = len(ok)
        rows.append(row)
    return rows


def table(doc: dict) -> str:
    rows = [r for r in merged(doc) if not r.get("rate_limit")]
    lower = {
        (r["n"], r["interval"]): r for r in rows if r.get("kind") == "aiohttp_shared" and "error" not in r
    }
    lines = [
        "| interval | N | kind | CPU ms/poll | x lower bound | polls done / intended "
        "| lateness p50 / p99 (s) "
        "| loop lag p99 (ms) | peak RSS (MB) | RSS / trigger (KB) | open sockets | new conn / poll "
        "| runner CPU | runner waited for CPU | server CPU |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {k: i for i, k in enumerate(ALL_KINDS)}
    rows.sort(key=lambda r: (-r.get("interval", 0), r.get("n", 0), order.get(r.get("kind"), 99)))
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r.get('interval', 0):g} s | {r.get('n', 0):,} "
                f"| {LABELS.get(r.get('kind'), r.get('kind'))} "
                f"| {r['error']} ||||||||||||"
            )
            continue
        lb = lower.get((r["n"], r["interval"]))
        ratio = (
            (r["cpu_ms_per_poll"] / lb["cpu_ms_per_poll"])
            if lb and lb.get("cpu_ms_per_poll") and r.get("cpu_ms_per_poll")
            else None
        )
        name = LABELS.get(r["kind"], r["kind"])
        if r["kind"] == "lip_sync":
            name = f"**{name}**"
        if (r.get("runner_runqueue_wait") or 0) > DISTURBED:
            name += " †"
        lines.append(
            f"| {r['interval']:g} s | {r['n']:,} | {name} "
            f"| {fmt(r.get('cpu_ms_per_poll'), 3)} | {fmt(ratio)} "
            f"| {r.get('polls', 0):,} / {r.get('polls_intended', 0):,.0f} ({fmt_pct(r.get('polls_ratio'))}) "
            f"| {fmt(r.get('lateness_p50_s'), 3)} / {fmt(r.get('lateness_p99_s'), 3)} "
            f"| {fmt(r.get('loop_lag_p99_ms'), 1)} | {fmt(r.get('peak_rss_mb'), 0)} "
            f"| {fmt(r.get('rss_per_trigger_kb'), 1)} "
            f"| {r.get('open_sockets_max', '-')} | {fmt(r.get('new_conn_per_poll'), 2)} "
            f"| {fmt_pct(r.get('runner_cpu_util'))} | {fmt_pct(r.get('runner_runqueue_wait'))} "
            f"| {fmt_pct(r.get('server_cpu_util'))} |"
        )
    return "\n".join(lines)


def ratios(doc: dict) -> str:
    """The issue's targets, from this one run."""
    by = {
        (r["kind"], r["n"], r["interval"]): r
        for r in merged(doc)
        if "error" not in r and not r.get("rate_limit")
    }
    keys = sorted({(n, i) for (_, n, i) in by}, key=lambda x: (-x[1], x[0]))
    out = []
    for n, i in keys:
        ours, lb = by.get(("lip_sync", n, i)), by.get(("aiohttp_shared", n, i))
        if not ours or not ours.get("cpu_ms_per_poll"):
            continue
        parts = [f"N = {n:,}, {i:g} s"]
        if lb and lb.get("cpu_ms_per_poll"):
            x = ours["cpu_ms_per_poll"] / lb["cpu_ms_per_poll"]
            parts.append(
                f"ours / lower bound = **{x:.2f}x** (target <= 1.15x: {'met' if x <= 1.15 else 'NOT met'})"
            )
        peers = [by[(p, n, i)] for p in PEERS if (p, n, i) in by and by[(p, n, i)].get("cpu_ms_per_poll")]
        if peers:
            best = min(peers, key=lambda r: r["cpu_ms_per_poll"])
            y = best["cpu_ms_per_poll"] / ours["cpu_ms_per_poll"]
            target = f" (target at N = 1,000 >= 3x: {'met' if y >= 3 else 'NOT met'})" if n == 1000 else ""
            parts.append(f"best peer ({LABELS[best['kind']]}) / ours = **{y:.2f}x**{target}")
        ls = by.get(("aiohttp_lockstep", n, i))
        if ls and ls.get("cpu_ms_per_poll"):
            parts.append(
                "ours / lower bound on the lockstep schedule = "
                f"{ours['cpu_ms_per_poll'] / ls['cpu_ms_per_poll']:.2f}x"
            )
        out.append("- " + ": ".join([parts[0], "; ".join(parts[1:])]))
    return "\n".join(out)


def rate_limit_table(doc: dict) -> str:
    rows = [r for r in merged(doc) if r.get("rate_limit") and "error" not in r]
    if not rows:
        return ""
    lines = [
        "| kind | N | interval | limit (req/s) | conn extra | requests | 429 share | tasks polled "
        "| max gap (s) | bound 2*N/R (s) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bound = 2 * r["n"] / r["rate_limit"]
        lines.append(
            f"| {LABELS.get(r['kind'], r['kind'])} | {r['n']:,} | {r['interval']:g} s | {r['rate_limit']:g} "
            f"| `{json.dumps(r.get('conn_extra') or {})}` | {r.get('requests', 0):,} "
            f"| {fmt_pct(r.get('share_429'), 2)} "
            f"| {r.get('tasks_polled', 0):,} / {r['n']:,} | {fmt(r.get('max_gap_s'), 1)} | {bound:.0f} |"
        )
    return "\n".join(lines)


def report(doc: dict) -> str:
    v = doc.get("versions", {})
    m = doc.get("machine", {})
    head = (
        f"Run `{doc.get('name')}` started {doc.get('started', '?')}, {len(doc['results'])} measurements in "
        f"{doc.get('seconds', 0) / 60:.1f} min; {m.get('cpu_model', '?')}, {m.get('cpus', '?')} cores, "
        f"load average at start {m.get('loadavg_at_start', '?')}; Python {v.get('python')}, "
        f"Airflow {v.get('apache-airflow')}, aiohttp {v.get('aiohttp')}, httpx {v.get('httpx')}, "
        f"http provider {v.get('apache-airflow-providers-http')}, dbt Cloud provider "
        f"{v.get('apache-airflow-providers-dbt-cloud')}."
    )
    disturbed = sum(1 for r in doc["results"] if (r.get("runner_runqueue_wait") or 0) > DISTURBED)
    note = (
        f"† {disturbed} of {len(doc['results'])} measurements: the runner waited for its core more than "
        f"{DISTURBED:.0%} of the window (other processes on the machine); their polls-done and lateness "
        "numbers are disturbed, CPU per poll less so."
        if disturbed
        else ""
    )
    reps = max((r.get("rep", 0) for r in doc["results"]), default=0) + 1
    if reps > 1:
        head += f" Each row is the median of {reps} rounds."
    parts = (
        [head, "", table(doc), "", note, "", ratios(doc)] if note else [head, "", table(doc), "", ratios(doc)]
    )
    rl = rate_limit_table(doc)
    if rl:
        parts += ["", "Rate-limited scenario:", "", rl]
    return "\n".join(parts) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    rows = [r for r in merged(doc) if "error" not in r and not r.get("rate_limit") and r.get("kind") in KINDS]
    intervals = sorted(
        {r["interval"] for r in rows if len({x["n"] for x in rows if x["interval"] == r["interval"]}) > 1},
        reverse=True,
    ) or sorted({r["interval"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(
        2, len(intervals), figsize=(6.8 * len(intervals), 9.5), squeeze=False, sharey="row"
    )
    styles = {
        "lip_sync": ("tab:red", "o", 3.0),
        "aiohttp_shared": ("black", "s", 1.8),
        "http_sensor": ("tab:blue", "^", 1.6),
        "dbt_cloud": ("tab:green", "v", 1.6),
        "httpx_shared": ("tab:purple", "D", 1.6),
    }
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for col, interval in enumerate(intervals):
        for row, (key, ylabel) in enumerate(
            (
                ("cpu_ms_per_poll", "CPU ms per poll (runner user+sys / polls answered)"),
                ("lateness_p99_s", "poll lateness p99, s (server-side)"),
            )
        ):
            ax = axes[row][col]
            for kind in KINDS:
                # a kind that answered under 5 % of its polls has collapsed: no meaningful point
                pts = sorted(
                    (r["n"], r.get(key), (r.get("runner_runqueue_wait") or 0) > DISTURBED)
                    for r in rows
                    if r["kind"] == kind
                    and r["interval"] == interval
                    and r.get(key) is not None
                    and (r.get("polls_ratio") or 0) >= 0.05
                )
                if not pts:
                    continue
                color, marker, lw = styles[kind]
                xs, ys = [p[0] for p in pts], [max(p[1], 1e-3) for p in pts]
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    linewidth=lw,
                    label=LABELS[kind],
                    zorder=3 if kind == "lip_sync" else 2,
                )
                for x, y, disturbed in zip(xs, ys, [p[2] for p in pts], strict=False):
                    ax.plot(
                        [x],
                        [y],
                        marker=marker,
                        color=color,
                        markersize=7,
                        markerfacecolor="white" if disturbed else color,
                        zorder=4,
                    )
            if row == 1:
                # the schedule alone: ±1 % jitter plus the scheduler's 50 ms grid
                floor = 0.01 * interval + 0.05
                ax.axhline(floor, color="tab:red", linestyle=":", linewidth=1)
                ax.text(
                    0.02,
                    floor * 0.85,
                    "LipSyncTrigger's schedule alone: 1 % of the interval + its 50 ms grid",
                    color="tab:red",
                    fontsize=8,
                    va="top",
                    transform=ax.get_yaxis_transform(),
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([100, 1000, 5000, 10000])
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(plain)
            low, high = ax.get_ylim()
            ax.yaxis.set_minor_formatter(plain if high / max(low, 1e-9) < 30 else NullFormatter())
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_xlabel("N waiting triggers in one runner process (one core)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"poll interval {interval:g} s")
            ax.grid(True, which="both", alpha=0.3)

    fig.suptitle(
        "One Airflow 3.3 TriggerRunner, N triggers of one kind: CPU per poll and p99 lateness\n"
        "hollow marker: the runner waited for its core > 10 % of the window (machine busy); "
        "missing point: under 5 % of the intended polls answered (collapsed)",
        fontsize=11,
    )
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: a row whose runner waited for its core longer than this share of the window is marked with †
DISTURBED = 0.10

README_MARK_BEGIN = "<!-- RESULTS:BEGIN -->"
README_MARK_END = "<!-- RESULTS:END -->"


def write_report(results_path: Path) -> None:
    doc = json.loads(results_path.read_text())
    text = report(doc)
    (HERE / "RESULTS.md").write_text(
        "# Trigger benchmark results\n\nGenerated by `bench/run.py` from "
        f"`bench/results/{results_path.name}`; see `bench/README.md` for what each column means.\n\n"
        + text
        + "\n![CPU per poll and p99 lateness against N](plot.png)\n"
    )
    plot(doc, HERE / "plot.png")
    readme = HERE / "README.md"
    if readme.exists():
        body = readme.read_text()
        if README_MARK_BEGIN in body and README_MARK_END in body:
            pre, rest = body.split(README_MARK_BEGIN, 1)
            _, post = rest.split(README_MARK_END, 1)
            readme.write_text(pre + README_MARK_BEGIN + "\n" + text + README_MARK_END + post)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        path = Path(args.report)
        print(report(json.loads(path.read_text())))
        write_report(path)
        return 0
    path = run_all(args)
    doc = json.loads(path.read_text())
    print()
    print(report(doc))
    if args.full or args.write_report:
        write_report(path)
        print("wrote bench/RESULTS.md and bench/plot.png")
    return 0 if all("error" not in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
