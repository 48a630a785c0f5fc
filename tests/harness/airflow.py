"""What every Airflow deployment of the level suites shares: its environment, ``airflow db migrate``
and the api-server's health endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from tests.harness.processes import AIRFLOW, inherited_env, run_logged

if TYPE_CHECKING:
    from pathlib import Path

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def airflow_env(home: Path, dags_folder: Path) -> dict[str, str]:
    """The environment of every Airflow command of a deployment: its own home and DAGs folder, the
    simple auth manager with every user an admin (no login), nothing of the caller's ``AIRFLOW*``."""
    return {
        **inherited_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }


def migrate(env: dict[str, str], log_dir: Path, cwd: Path) -> Path:
    """``airflow db migrate`` (output in ``<log_dir>/db-migrate.log``); raises with its tail on failure."""
    return run_logged(
        "db-migrate", [AIRFLOW, "db", "migrate"], env=env, log_dir=log_dir, cwd=cwd, timeout=300
    )


def api_server_args(port: int) -> list[str]:
    return [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def api_healthy(url: str, session: requests.Session | None = None) -> bool:
    """Whether the api-server at ``url`` answers its health endpoint with 200."""
    try:
        resp = (session or requests).get(f"{url}/api/v2/monitor/health", timeout=5)
    except requests.RequestException:
        return False
    return resp.status_code == 200
