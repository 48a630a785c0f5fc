"""Registration with Airflow: entry point, provider info, connection form, light package import."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest

from airflow_provider_jogg import __version__
from airflow_provider_jogg._compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS
from airflow_provider_jogg.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_jogg.hooks.jogg import JoggHook

MODULES = {
    "hooks": "airflow_provider_jogg.hooks.jogg",
    "operators": "airflow_provider_jogg.operators.lip_sync",
    "sensors": "airflow_provider_jogg.sensors.lip_sync",
    "triggers": "airflow_provider_jogg.triggers.lip_sync",
}


def test_provider_info_matches_airflow_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-jogg"
    assert info["versions"] == [__version__]


def test_airflow_cli_lists_the_provider():
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "providers",
            "get",
            "airflow-provider-jogg",
            "--full",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    # CLI warnings may precede the JSON on stdout
    (info,) = json.loads(out[out.index("[{") :])
    for kind, module in MODULES.items():
        assert info[kind][0]["python-modules"] == [module]
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "jogg"
    assert conn_type["hook-class-name"] == "airflow_provider_jogg.hooks.jogg.JoggHook"
    assert set(conn_type["conn-fields"]) >= {"api_platform", "timeout", "max_retries"}


def test_every_listed_module_and_class_imports():
    import importlib

    info = get_provider_info()
    for kind in MODULES:
        for module in info[kind][0]["python-modules"]:
            importlib.import_module(module)
    module, _, name = info["connection-types"][0]["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is JoggHook


def test_providers_manager_sees_hook_and_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["jogg"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_jogg.hooks.jogg.JoggHook"
    assert hook.connection_id_attribute_name == "jogg_conn_id"
    if not AIRFLOW_V_3_2_PLUS:
        pytest.skip("before 3.2 the form comes from the hook's methods; see test_ui_connection_form")
    behaviour = manager.field_behaviours["jogg"]
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API Key"}
    assert behaviour["placeholders"]["host"] == "https://api.jogg.ai"
    widgets = manager.connection_form_widgets
    assert "extra__jogg__timeout" in widgets
    assert "extra__jogg__api_platform" in widgets


def test_ui_connection_form():
    """What the UI's connection form gets, on every 3.x (3.2+: provider info; 3.0/3.1: hook methods)."""
    if not AIRFLOW_V_3_1_PLUS and importlib.util.find_spec("wtforms") is None:
        pytest.skip("Airflow 3.0's UI shows provider form fields only with wtforms (the FAB provider)")
    code = (
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == 'jogg']\n"
        "print('META=' + meta.model_dump_json())\n"
    )
    # a fresh process: the providers manager is a singleton whose caches other tests fill
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    meta = json.loads(out.rsplit("META=", 1)[1])
    assert meta["hook_class_name"] == "airflow_provider_jogg.hooks.jogg.JoggHook"
    fields = meta["standard_fields"]
    assert fields["host"] == {"hidden": False, "title": "Base URL", "placeholder": "https://api.jogg.ai"}
    assert fields["password"]["title"] == "API Key"
    assert fields["port"]["hidden"]
    assert fields["login"]["hidden"]
    assert set(meta["extra_fields"]) == set(CONN_FIELDS)
    assert meta["extra_fields"]["timeout"]["description"] == CONN_FIELDS["timeout"]["description"]


def test_hook_form_matches_provider_info():
    behaviour = JoggHook.get_ui_field_behaviour()
    info = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour == {
        "hidden_fields": info["hidden-fields"],
        "relabeling": info["relabeling"],
        "placeholders": info["placeholders"],
    }
    assert (JoggHook.conn_type, JoggHook.conn_name_attr, JoggHook.default_conn_name) == (
        "jogg",
        "jogg_conn_id",
        "jogg_default",
    )
    assert JoggHook.hook_name == "JoggAI"


def test_package_import_does_not_import_airflow():
    code = (
        "import sys, airflow_provider_jogg, airflow_provider_jogg.get_provider_info, "
        "airflow_provider_jogg.testing; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
