"""Registry paths that only Unity Catalog exercises, against a TEST DOUBLE of MLflow's UC client
(tests/doubles/unity_catalog.py) wrapped around a real sqlite registry."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, TEMPORARILY_UNAVAILABLE

from spark_mlops import promotion, registry
from spark_mlops.config import PromoteConfig
from spark_mlops.constants import EXIT_REGISTRY
from spark_mlops.errors import ConfigError, RegistryError
from tests.conftest import run_cli
from tests.doubles.unity_catalog import UnityCatalogClientDouble


@pytest.fixture
def uc(trained, monkeypatch):
    """A UC-shaped view of a fresh model with five copies of the trained good version, v1 @champion."""
    view, _ = trained.fresh("1", "1", "1", "1", "1", name=f"main.ml.m_{uuid.uuid4().hex[:8]}")
    trained.client.set_registered_model_alias(view.model_name, "champion", "1")
    double = UnityCatalogClientDouble(trained.client, page_size=2)
    monkeypatch.setattr(registry, "client", lambda _settings: double)
    return replace(view, registry_uri="databricks-uc"), double


def test_status_reads_every_page_and_each_versions_tags(uc):
    view, double = uc
    registry.set_tags(view, "4", {"validation_status": "passed"})
    rows = registry.versions(view)
    assert [r.version for r in rows] == ["1", "2", "3", "4", "5"]  # three pages of two
    assert rows[3].tags["validation_status"] == "passed"
    data = json.loads(registry.status_json(view))
    assert data["aliases"] == {"champion": "1"}
    assert data["versions"][3]["verdict"] == {"validation_status": "passed"}
    assert "main.ml.m_" in registry.status_table(view)


def test_stages_are_refused_before_anything_moves(uc):
    view, double = uc
    with pytest.raises(ConfigError, match="Unity Catalog, which has no stages"):
        promotion.promote(view, PromoteConfig(version="2", stages=True))
    with pytest.raises(ConfigError, match="no stages"):
        promotion.rollback(view, stages=True)
    assert double.writes == []


def test_aliases_wait_until_the_new_version_is_ready(uc, trained):
    view, _ = uc
    slow = UnityCatalogClientDouble(trained.client, pending_reads=2)
    registry.client = lambda _settings: slow  # the fixture's monkeypatch restores it
    assert registry.await_ready(view, "2").status == "READY"
    assert slow._reads[(view.model_name, "2")] == 3
    failed = UnityCatalogClientDouble(trained.client, fail_registration=True)
    registry.client = lambda _settings: failed
    with pytest.raises(RegistryError, match="v2 failed to register"):
        registry.await_ready(view, "2")


def test_a_missing_alias_is_absent_but_a_stage_call_is_a_failure(uc):
    view, double = uc
    assert registry.alias_version(view, "challenger") is None
    with pytest.raises(Exception, match="unsupported for models in the Unity Catalog"):
        double.transition_model_version_stage(view.model_name, "1", "Production", True)


def test_a_unity_catalog_outage_is_exit_4_never_read_as_absent(uc, trained, capsys):
    """The double re-raises every error that is not "does not exist"; an outage stops each command
    with exit 4 and changes nothing."""
    view, double = uc
    args = (*trained.common, "--registry-uri", "databricks-uc", "--model-name", view.model_name)
    double.outage = MlflowException("503 Service Unavailable: the metastore is not reachable",
                                    error_code=TEMPORARILY_UNAVAILABLE)
    for command in (("status",), ("promote", "--version", "2"), ("rollback", "--version", "1"),
                    ("deploy-model", "--source-model-name", "main.ml.other")):
        assert run_cli(*command, *args) == EXIT_REGISTRY, command
        err = capsys.readouterr().err
        assert "the metastore is not reachable" in err and "Traceback" not in err, err
    double.outage = None
    assert double.writes == []
    assert registry.alias_version(view, "champion") == "1"


def test_the_double_turns_only_a_missing_alias_into_does_not_exist(uc, trained, monkeypatch):
    view, double = uc
    assert registry.alias_version(view, "nope") is None
    real = trained.client.get_model_version_by_alias

    def broken(name, alias):
        raise MlflowException("permission denied on the model", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(trained.client, "get_model_version_by_alias", broken)
    with pytest.raises(RegistryError, match="permission denied on the model"):
        registry.alias_version(view, "champion")
    monkeypatch.setattr(trained.client, "get_model_version_by_alias", real)
