from __future__ import annotations

import pytest

from spark_mlops.config import build_settings, parse_key_values
from spark_mlops.errors import ConfigError


def test_each_workspace_tracks_to_its_own_store_and_all_share_one_registry(tmp_path):
    s = build_settings(state_dir=str(tmp_path))
    assert s.tracking_uri == f"sqlite:///{tmp_path}/workspaces/dev/tracking.db"
    assert s.registry_uri == f"sqlite:///{tmp_path}/registry.db"
    assert s.separate_registry
    by_target = {t: build_settings(state_dir=str(tmp_path), target=t) for t in ("dev", "test", "staging", "prod")}
    assert by_target["staging"].tracking_uri == f"sqlite:///{tmp_path}/workspaces/staging/tracking.db"
    assert by_target["test"].tracking_uri == by_target["staging"].tracking_uri  # test runs in staging's workspace
    assert by_target["prod"].tracking_uri == f"sqlite:///{tmp_path}/workspaces/prod/tracking.db"
    assert {b.registry_uri for b in by_target.values()} == {s.registry_uri}  # one metastore


def test_local_workspaces_follow_the_bundles_workspace_profiles():
    """Targets that deploy to one workspace (the same workspace.profile) share a local tracking store."""
    from spark_mlops.config import local_workspace
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
    from tests.conftest import REPO_ROOT

    profiles = {t: (resolve_bundle(REPO_ROOT, t).config.get("workspace") or {}).get("profile")
                for t in ("dev", "test", "staging", "prod")}
    for a in profiles:
        for b in profiles:
            same_profile = profiles[a] is not None and profiles[a] == profiles[b]
            assert (local_workspace(a) == local_workspace(b)) == (same_profile or a == b), (a, b, profiles)


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
    assert second.tracking_uri == f"sqlite:///{tmp_path}/b/workspaces/dev/tracking.db"
