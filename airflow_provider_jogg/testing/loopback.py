"""The loopback-only rule shared by the fake server and the fault proxy: neither listens elsewhere."""

from __future__ import annotations

import ipaddress

__all__ = ["check_loopback"]


def check_loopback(host: str) -> None:
    """Raise ``ValueError`` unless ``host`` is a loopback address (127.0.0.0/8, ::1) or localhost."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"FakeJoggServer only listens on loopback addresses (127.x.x.x, ::1, localhost), got {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"FakeJoggServer only listens on loopback addresses (127.x.x.x, ::1, localhost), got {host!r}"
        )
