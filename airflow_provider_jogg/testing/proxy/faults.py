"""What a :class:`~airflow_provider_jogg.testing.proxy.FaultProxy` can do to the network: the kinds of
fault and the steps a schedule is made of."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROXY_FAULT_KINDS", "ProxyFault"]


#: Every kind of :class:`ProxyFault`.
PROXY_FAULT_KINDS: frozenset[str] = frozenset({"pass", "reset", "stall", "refuse"})


@dataclass(frozen=True)
class ProxyFault:
    """One step of a :class:`FaultProxy` schedule.

    :param kind: ``reset``, ``stall``, ``refuse`` or ``pass`` (see :mod:`airflow_provider_jogg.testing.proxy`)
    :param after_bytes: ``reset`` and ``stall``: bytes of each response relayed before the fault
        (0: none). A response no longer than this passes unharmed and does not count.
    :param times: responses the step applies to before the next step starts (``None``: until
        ``seconds`` pass or the fault heals). Not for ``refuse``: refused connections never reach
        the proxy, so it cannot count them.
    :param seconds: the step ends after this long (counted from when it starts); ``None``: no limit
    """

    kind: str
    after_bytes: int = 0
    times: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROXY_FAULT_KINDS:
            raise ValueError(
                f"unknown proxy fault kind {self.kind!r}; expected one of {sorted(PROXY_FAULT_KINDS)}"
            )
        if (
            isinstance(self.after_bytes, bool)
            or not isinstance(self.after_bytes, int)
            or self.after_bytes < 0
        ):
            raise ValueError(f"ProxyFault.after_bytes must be an int >= 0, got {self.after_bytes!r}")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError(f"ProxyFault.times must be None or an int >= 1, got {self.times!r}")
        if self.kind == "refuse" and self.times is not None:
            raise ValueError(
                "a 'refuse' step cannot count connections it never sees: give it seconds, or heal()"
            )
        if self.seconds is not None and (
            isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) or self.seconds <= 0
        ):
            raise ValueError(f"ProxyFault.seconds must be None or a number > 0, got {self.seconds!r}")
