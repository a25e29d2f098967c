"""Registry paths that only Unity Catalog exercises, against a TEST DOUBLE of MLflow's UC client
(tests/doubles/unity_catalog.py) wrapped around a real sqlite registry."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from spark_mlops import promotion, registry
from spark_mlops.config import PromoteConfig
from spark_mlops.errors import ConfigError, RegistryError
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
