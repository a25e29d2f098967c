from __future__ import annotations

import pytest

from spark_mlops.config import build_settings, parse_key_values
from spark_mlops.errors import ConfigError


def test_embedded_default_is_two_sqlite_files_under_the_state_folder(tmp_path):
    s = build_settings(state_dir=str(tmp_path))
    assert s.tracking_uri == f"sqlite:///{tmp_path}/tracking.db"
    assert s.registry_uri == f"sqlite:///{tmp_path}/registry.db"
    assert s.separate_registry


def test_flags_override_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("SPARK_MLOPS_MODEL_NAME", "from_env")
    s = build_settings(state_dir=str(tmp_path), model_name="from_flag")
    assert s.registry_uri == "http://127.0.0.1:5000"
    assert s.model_name == "from_flag"


def test_unity_catalog_needs_three_part_model_names(tmp_path):
    with pytest.raises(ConfigError, match="three-part"):
        build_settings(state_dir=str(tmp_path), registry_uri="databricks-uc", model_name="m")
    s = build_settings(state_dir=str(tmp_path), registry_uri="databricks-uc", model_name="main.ml.m")
    assert s.model_name == "main.ml.m"


def test_unsupported_uri_is_named(tmp_path):
    with pytest.raises(ConfigError, match="ftp://x"):
        build_settings(state_dir=str(tmp_path), tracking_uri="ftp://x")


def test_table_names_are_qualified_with_catalog_and_schema(tmp_path):
    s = build_settings(state_dir=str(tmp_path), catalog="main", schema="ml")
    assert s.table_name("clean") == "main.ml.clean"
    assert s.table_name("other.t") == "other.t"


def test_key_values():
    assert parse_key_values("a=1, b=x", "--p") == {"a": "1", "b": "x"}
    with pytest.raises(ConfigError, match="'oops' is not key=value"):
        parse_key_values("a=1,oops", "--p")


def test_configuring_mlflow_does_not_leak_into_the_next_commands_settings(tmp_path):
    from spark_mlops import tracking

    first = build_settings(state_dir=str(tmp_path / "a"))
    tracking.configure(first)
    second = build_settings(state_dir=str(tmp_path / "b"))
    assert second.tracking_uri == f"sqlite:///{tmp_path}/b/tracking.db"
