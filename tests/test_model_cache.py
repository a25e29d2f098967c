"""Registered versions are loaded once per process and Spark context (registry.load_spark_model)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from spark_mlops import registry
from tests.conftest import REPO_ROOT
from tests.tiny_model import files_hidden, files_of, register_tiny_model


def test_a_second_load_of_a_version_reads_nothing_from_the_store(spark, settings):
    version, frame = register_tiny_model(spark, settings, seed=1)
    first, signature = registry.load_spark_model(settings, version)
    with files_hidden(files_of(settings, version)):
        again, again_signature = registry.load_spark_model(settings, version)
    assert again is first and again_signature == signature
    assert again.transform(frame).count() == frame.count()


def test_each_version_is_its_own_model(spark, settings):
    one, _ = register_tiny_model(spark, settings, seed=1)
    two, _ = register_tiny_model(spark, settings, seed=2)
    first, _ = registry.load_spark_model(settings, one)
    second, _ = registry.load_spark_model(settings, two)
    assert second is not first
    assert list(second.stages[-1].coefficients) != list(first.stages[-1].coefficients)


def test_a_copy_of_a_version_reuses_its_sources_load(spark, settings):
    version, _ = register_tiny_model(spark, settings, seed=1)
    first, _ = registry.load_spark_model(settings, version)
    copy = registry.client(settings).copy_model_version(f"models:/{settings.model_name}/{version}", "copied")
    with files_hidden(files_of(settings, version)):
        loaded, _ = registry.load_spark_model(replace(settings, model_name="copied"), str(copy.version))
    assert loaded is first


@pytest.mark.slow
def test_a_restarted_spark_session_loads_the_version_again(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "tests.tiny_model", str(tmp_path / "state")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "reload read the store" in done.stdout
    assert "new model: True; rows scored: 1" in done.stdout
