"""Child processes of the level suites: started in their own session, stopped by their own PID.

Every process writes stdout and stderr to one log file; :func:`log_tails` turns those files into a
failure report. Nothing here looks a process up by name: a :class:`Process` knows the PID it started
and the session (process group) it leads, and only those are signalled.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.harness.waiting import HarnessError

if TYPE_CHECKING:
    from collections.abc import Iterable

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def tail(path: Path, lines: int = 80) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_tails(logs: Iterable[Path], lines: int = 60, *, drop: str | None = None) -> str:
    """The last ``lines`` lines of each log file, under a header naming it; lines holding ``drop``
    (e.g. an access log's marker) are left out before counting."""
    parts = []
    for log in logs:
        text = tail(log, 10**9 if drop else lines)
        if drop:
            text = "\n".join([line for line in text.splitlines() if drop not in line][-lines:])
        parts.append(f"----- {log.name} (last {lines} lines) -----\n{text}")
    return "\n".join(parts)


def inherited_env() -> dict[str, str]:
    """The test process's environment without any ``AIRFLOW*`` setting (above all not the deferral
    floor of 0 s that the in-process suites run with), unbuffered Python output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_as(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class Process:
    """One child process, started in its own session; its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    #: what :meth:`terminate` sends (PostgreSQL: SIGINT, its "fast" shutdown; its SIGTERM would
    #: wait for every client to disconnect)
    stop_signal: int = signal.SIGTERM
    #: SIGKILL was needed (a crash, or no exit within the timeout after the stop signal)
    killed: bool = False
    stopped: bool = False
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def args(self) -> list[str]:
        """Its command line, to start it again."""
        args = self.popen.args
        return [str(a) for a in args] if isinstance(args, list) else [str(args)]

    def raise_if_exited(self) -> None:
        """For a probe waiting on it: raise :class:`HarnessError` with its output if it has exited."""
        if self.popen.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.popen.returncode}:\n{tail(self.log)}")

    def terminate(self) -> None:
        """Send the stop signal once (a second SIGTERM makes the scheduler stop waiting for its tasks)."""
        if not self.terminated and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, self.stop_signal)
        self.terminated = True

    def stop(self, timeout: float = 30.0) -> int | None:
        """The stop signal to its own PID, SIGKILL after ``timeout``; then whatever is left of its
        session. Idempotent: the session is swept only once, right after its leader exited, so that a
        recycled PID can never be hit later."""
        if self.stopped:
            return self.popen.returncode
        proc = self.popen
        if proc.poll() is None:
            self.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Its children (LocalExecutor workers, the trigger runner, api-server workers) live in the
        # session this process leads: the process group id is its PID, which we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.stopped = True
        return proc.returncode

    def crash(self) -> None:
        """SIGKILL its own PID (no cleanup, no goodbye to the DB). Its children are left to
        themselves as after a real crash, in the session that :meth:`stop` sweeps later."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.killed = True

    def session_alive(self) -> bool:
        """Whether any process is left in the session it led (e.g. orphans of a crash)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def environ(self) -> dict[str, str]:
        """The environment the running process really got (``/proc/<pid>/environ``)."""
        raw = Path(f"/proc/{self.pid}/environ").read_bytes()
        pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def spawn(
    name: str,
    args: list[str],
    *,
    env: dict[str, str] | None,
    log_dir: Path,
    cwd: Path,
    stop_signal: int = signal.SIGTERM,
    user: str | None = None,
) -> Process:
    """Start ``args`` in a new session, output appended to ``<log_dir>/<name>.log``; as ``user`` if given."""
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **_run_as(user),
        )
    return Process(name, popen, log, stop_signal=stop_signal)


def run_logged(
    name: str,
    args: list[str],
    *,
    env: dict[str, str] | None,
    log_dir: Path,
    cwd: Path,
    timeout: float,
    user: str | None = None,
) -> Path:
    """Run a one-shot command (``airflow db migrate``, ``initdb``) in its own session, output in
    ``<log_dir>/<name>.log``; raise :class:`HarnessError` with its output's tail unless it exits 0
    within ``timeout`` seconds (it is stopped then)."""
    proc = spawn(name, args, env=env, log_dir=log_dir, cwd=cwd, user=user)
    try:
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.stop(timeout=10)
        raise HarnessError(f"{name} did not finish within {timeout:.0f} s:\n{tail(proc.log)}") from None
    finally:
        proc.stop()  # sweeps its session
    if proc.popen.returncode != 0:
        raise HarnessError(f"{name} failed (exit {proc.popen.returncode}):\n{tail(proc.log)}")
    return proc.log


# --------------------------------------------------------------------------------------------------
# What is left running: by process group / session of every PID we started, and by marker
# --------------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3])


def _holds_marker(entry: Path, markers: list[bytes]) -> bool:
    # PostgreSQL's children are session leaders of their own and rewrite their command line, but
    # they keep the data dir as their working directory
    with contextlib.suppress(OSError):
        cwd = os.fsencode(os.readlink(entry / "cwd"))
        if any(cwd.startswith(m) for m in markers):
            return True
    for name in ("environ", "cmdline"):
        with contextlib.suppress(OSError):
            data = (entry / name).read_bytes()
            if any(m in data for m in markers):
                return True
    return False


def leftover_processes(groups: set[int], markers: Iterable[bytes]) -> dict[str, list[str]]:
    """Processes still in one of ``groups`` (process group or session ids: the PIDs we started with
    ``start_new_session=True``), or whose working directory, environment or command line holds one
    of ``markers`` (a deployment's own temp dirs). Zombies (exited, not yet reaped) are listed apart."""
    wanted = [m for m in markers if m]
    alive: list[str] = []
    zombies: list[str] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        state, pgid, sid = stat
        if not (pgid in groups or sid in groups or _holds_marker(entry, wanted)):
            continue
        cmd = ""
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        line = f"pid {pid} (pgid {pgid}, sid {sid}, state {state}): {cmd}"
        (zombies if state == "Z" else alive).append(line)
    return {"alive": alive, "zombies": zombies}
