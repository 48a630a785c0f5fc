"""Apache Airflow provider for JoggAI lip sync.

Importing this package stays light on purpose: it imports nothing from Airflow, so that
``get_provider_info`` and the fake server load quickly.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
