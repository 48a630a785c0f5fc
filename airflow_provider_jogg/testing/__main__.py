"""Run the fake JoggAI API from a shell: ``python -m airflow_provider_jogg.testing``.

Once listening, prints exactly one line, ``JOGG_FAKE_URL=http://127.0.0.1:PORT[prefix]``, to
stdout, then serves until SIGTERM or SIGINT (Ctrl-C) and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import TYPE_CHECKING

from airflow_provider_jogg.testing.server import FakeJoggServer

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


class _Shutdown(Exception):
    """Raised in the main thread by the SIGTERM / SIGINT handler."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn a termination signal into a clean shutdown."""
    raise _Shutdown(signum)


def _seconds_or_never(text: str) -> float | None:
    """Parse a number of seconds, or ``never`` / ``none`` for a task that never finishes."""
    if text.strip().lower() in ("never", "none", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'never', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds must be >= 0")
    return value


def _non_negative(text: str) -> float:
    """Parse a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _count(text: str) -> int:
    """Parse an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive(text: str) -> float:
    """Parse a number > 0."""
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_jogg.testing",
        description="Serve a fake JoggAI lip-sync API on the loopback interface.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port, 0 = pick a free one (default 0)")
    parser.add_argument("--api-key", default="test-key", help="expected x-api-key value (default test-key)")
    parser.add_argument("--prefix", default="", help="path prefix of the API routes, e.g. /open")
    parser.add_argument(
        "--pending-seconds", type=_non_negative, default=0.2, help="seconds a new task stays pending"
    )
    parser.add_argument(
        "--processing-seconds",
        type=_seconds_or_never,
        default=1.0,
        help="seconds a task stays processing, or 'never'",
    )
    parser.add_argument("--duration-seconds", type=_non_negative, default=12.5, help="reported video length")
    parser.add_argument("--rate-limit", type=_positive, default=None, help="requests per second (429 above)")
    parser.add_argument(
        "--no-ffmpeg",
        action="store_true",
        help="never build result media with ffmpeg; serve the shipped sample files",
    )
    parser.add_argument(
        "--max-recorded-requests",
        type=_count,
        default=None,
        metavar="N",
        help="keep at most the N newest requests in detail (0: none); counts stay exact "
        "(GET /_fake/counts). Default: keep every request",
    )
    parser.add_argument(
        "--tag-results",
        action="store_true",
        help="end each result.mp4 with a box naming its task and clip (testing.media.result_tag)",
    )
    parser.add_argument("--remaining-quota", type=float, default=1000.0, help="reported remaining credits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until SIGTERM / SIGINT, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        server = FakeJoggServer(
            api_key=args.api_key,
            host=args.host,
            port=args.port,
            prefix=args.prefix,
            pending_seconds=args.pending_seconds,
            processing_seconds=args.processing_seconds,
            duration_seconds=args.duration_seconds,
            rate_limit=args.rate_limit,
            remaining_quota=args.remaining_quota,
            ffmpeg=False if args.no_ffmpeg else None,
            max_recorded_requests=args.max_recorded_requests,
            tag_results=args.tag_results,
        )
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            server.start()
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        print(f"JOGG_FAKE_URL={server.url}", flush=True)
        print(f"fake Jogg API listening on {server.url} (SIGTERM or Ctrl-C to stop)", file=sys.stderr)
        while True:
            time.sleep(3600)
    except _Shutdown:
        pass
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
