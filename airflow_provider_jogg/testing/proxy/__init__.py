"""A fault-injecting TCP proxy for the network between Airflow and Jogg (or the fake server).

:class:`FaultProxy` (in :mod:`~airflow_provider_jogg.testing.proxy.listener`, with the module's full
description) relays connections to an HTTP server and breaks them on demand; :class:`ProxyFault`
(:mod:`~airflow_provider_jogg.testing.proxy.faults`) is a step of its schedule, which
:mod:`~airflow_provider_jogg.testing.proxy.schedule` runs; :mod:`~airflow_provider_jogg.testing.proxy.relay`
relays the bytes of one connection, applying the step in force; :class:`ProxyStats` and
:class:`ProxyConnection` (:mod:`~airflow_provider_jogg.testing.proxy.stats`) say what really happened.
"""

from __future__ import annotations

from airflow_provider_jogg.testing.proxy.faults import PROXY_FAULT_KINDS, ProxyFault
from airflow_provider_jogg.testing.proxy.listener import FaultProxy
from airflow_provider_jogg.testing.proxy.stats import ProxyConnection, ProxyStats

__all__ = ["PROXY_FAULT_KINDS", "FaultProxy", "ProxyConnection", "ProxyFault", "ProxyStats"]
