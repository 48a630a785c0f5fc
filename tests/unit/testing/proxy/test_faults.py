"""Validating the steps of a schedule."""

from __future__ import annotations

import pytest

from airflow_provider_jogg.testing import ProxyFault


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "drop"}, "unknown proxy fault kind"),
        ({"kind": "reset", "after_bytes": -1}, "after_bytes"),
        ({"kind": "stall", "times": 0}, "times"),
        ({"kind": "refuse", "times": 2}, "cannot count"),
        ({"kind": "refuse", "seconds": 0}, "seconds"),
    ],
    ids=["kind", "after-bytes", "times", "refuse-times", "seconds"],
)
def test_invalid_faults_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        ProxyFault(**spec)
