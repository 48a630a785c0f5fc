"""What Airflow reads through the ``apache_airflow_provider`` entry point. Imports nothing from Airflow."""

from __future__ import annotations

from typing import Any

from airflow_provider_jogg import __version__

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL", "password": "API Key"},
    "placeholders": {
        "host": "https://api.jogg.ai",
        "password": "your JoggAI API key",
        "extra": '{"api_platform": "airflow", "timeout": 30, "max_retries": 3}',
    },
}

CONN_FIELDS: dict[str, Any] = {
    "api_platform": {
        "label": "API platform",
        "schema": {"type": ["string", "null"]},
        "description": "Sent as the x-api-platform header to identify the calling integration.",
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30, "exclusiveMinimum": 0},
        "description": "Seconds per HTTP request to Jogg.",
    },
    "max_retries": {
        "label": "Max retries",
        "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0},
        "description": "Retries after the first attempt, for requests that are safe to repeat; 0: none.",
    },
    "retry_backoff": {
        "label": "Retry backoff (seconds)",
        "schema": {"type": ["number", "null"], "default": 1, "minimum": 0},
        "description": "First wait between retries; doubles per attempt, never shorter than Retry-After.",
    },
    "rate_limit_wait": {
        "label": "Rate limit wait (seconds)",
        "schema": {"type": ["number", "null"], "default": 300, "minimum": 0},
        "description": "How long one request keeps waiting out HTTP 429 answers before it fails; "
        "these use none of the retries. 0: a 429 counts as a retry.",
    },
    "max_requests_per_second": {
        "label": "Max requests per second",
        "schema": {"type": ["number", "null"], "default": 100, "minimum": 0},
        "description": "Per account and process (e.g. one triggerer): all waits share it; the lowest "
        "set for an account wins. 0: no limit.",
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// to non-loopback hosts",
        "schema": {"type": ["boolean", "null"], "default": False},
        "description": "Sends the API key in clear text. Only for trusted networks.",
    },
    "allow_private_media_urls": {
        "label": "Allow media URLs on private addresses",
        "schema": {"type": ["boolean", "null"], "default": False},
        "description": "Lets upload_public_urls fetch from private, loopback and link-local addresses "
        "and upload what it gets to Jogg. Only for trusted internal media servers.",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-jogg",
        "name": "JoggAI",
        "description": "`JoggAI <https://www.jogg.ai/>`__ lip sync: hook, operator, deferrable sensor.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "JoggAI",
                "external-doc-url": "https://docs.jogg.ai/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "JoggAI", "python-modules": ["airflow_provider_jogg.hooks.jogg"]}],
        "operators": [
            {"integration-name": "JoggAI", "python-modules": ["airflow_provider_jogg.operators.lip_sync"]}
        ],
        "sensors": [
            {"integration-name": "JoggAI", "python-modules": ["airflow_provider_jogg.sensors.lip_sync"]}
        ],
        "triggers": [
            {"integration-name": "JoggAI", "python-modules": ["airflow_provider_jogg.triggers.lip_sync"]}
        ],
        "extra-links": ["airflow_provider_jogg.links.JoggResultLink"],
        "connection-types": [
            {
                "connection-type": "jogg",
                "hook-class-name": "airflow_provider_jogg.hooks.jogg.JoggHook",
                "hook-name": "JoggAI",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
