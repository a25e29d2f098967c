"""Attacks on the model gate that got through issue 27's checks, each reproduced against the real
loaders (pyspark 4.1, MLflow 3.8.1) and refused.

The Databricks load: ``mlflow.spark.load_model`` copies the checked folder into ``dfs_tmpdir`` (a
UC volume, in the metastore's storage) and Spark reads that copy, so a storage admin who rewrites
the copy as it appears (a blob-created trigger) had pyspark import any module: pyspark 4.1's
``PipelineModel.load`` imports every stage's Python class by the name in its metadata. The
simulation below takes MLflow's own Databricks branch (a shared-access cluster: copy to the volume,
load from there), with a local folder as the volume."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import pytest

from spark_mlops import registry, trust
from spark_mlops.errors import UntrustedModel
from tests.test_trust import FOREIGN_MODULE, foreign_module_source, genuine, register_forged  # noqa: F401


def add_stage_to_copy(copy: Path, class_name: str, params: dict | None = None) -> None:
    """What a storage admin writes into the copy Spark will read: one more stage, named by the
    pipeline's (rewritten) metadata, whose class is ``class_name``."""
    part = next((copy / "metadata").glob("part-*"))
    pipeline = json.loads(part.read_text())
    uid = f"Stage_{uuid.uuid4().hex[:12]}"
    pipeline["paramMap"]["stageUids"].append(uid)
    part.write_text(json.dumps(pipeline) + "\n")
    for crc in (copy / "metadata").glob(".*.crc"):
        crc.unlink()
    stage = copy / "stages" / f"{len(pipeline['paramMap']['stageUids']) - 1}_{uid}" / "metadata"
    stage.mkdir(parents=True)
    (stage / "part-00000").write_text(json.dumps({"class": class_name, "timestamp": 0, "sparkVersion": "4.1.4",
                                                  "uid": uid, "paramMap": params or {}, "defaultParamMap": {}}) + "\n")


@pytest.fixture
def on_databricks_with_a_volume(monkeypatch, tmp_path):
    """MLflow's and spark-mlops' Databricks branches, with ``tmp_path / "Volumes"`` as the UC volume
    (and no model loaded yet in this process)."""
    import mlflow.spark
    from mlflow.utils import databricks_utils

    volume = tmp_path / "Volumes" / "prod" / "spark_mlops" / "mlflow_tmp"
    volume.mkdir(parents=True)
    monkeypatch.setattr(databricks_utils, "is_in_databricks_shared_cluster_runtime", lambda: True)
    monkeypatch.setattr(mlflow.spark, "_check_databricks_uc_volume_tmpdir_availability", lambda _: None)
    monkeypatch.setattr("spark_mlops.config.on_databricks", lambda: True)
    monkeypatch.setattr(registry, "_LOADED", OrderedDict())
    return volume


def storage_admin_rewrites_copies_in(volume: Path, monkeypatch, change) -> list[Path]:
    """Every folder copied into ``volume`` is changed by ``change`` right after the copy."""
    real, changed = shutil.copytree, []

    def copytree(src, dst, *args, **kwargs):
        out = real(src, dst, *args, **kwargs)
        if Path(dst).parent == volume and (Path(dst) / "stages").is_dir():
            change(Path(dst))
            changed.append(Path(dst))
        return out

    monkeypatch.setattr(shutil, "copytree", copytree)
    return changed


def test_a_storage_admin_who_rewrites_the_volume_copy_gets_no_module_imported(
        trained, genuine, tmp_path, monkeypatch, on_databricks_with_a_volume):  # noqa: F811
    marker = tmp_path / "payload-ran"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    monkeypatch.syspath_prepend(str(modules))
    view, _ = trained.fresh("1")
    digest = trained.tags(trained.settings, "1")["model_digest"]
    version = register_forged(trained, view, genuine, digest)  # train's own files, signed: the check passes
    view = replace(view, dfs_tmpdir=str(on_databricks_with_a_volume))
    changed = storage_admin_rewrites_copies_in(on_databricks_with_a_volume, monkeypatch,
                                               lambda copy: add_stage_to_copy(copy, f"{FOREIGN_MODULE}.Stage"))
    try:
        with pytest.raises(UntrustedModel) as refused:
            registry.load_spark_model(view, version)
        assert not marker.exists() and FOREIGN_MODULE not in sys.modules, "the payload ran"
        assert changed, "the load made no copy in the volume"
        message = str(refused.value)
        assert "\n" not in message and "differs from its checked files" in message, message
    finally:
        sys.modules.pop(FOREIGN_MODULE, None)


def test_a_stage_swapped_after_the_copy_was_checked_is_refused_before_it_transforms(
        trained, genuine, tmp_path, monkeypatch, on_databricks_with_a_volume):  # noqa: F811
    """The race won later: the copy is changed after its check, before Spark reads it. Spark's JVM
    reader loads the SQLTransformer (no Python module is imported by name), and the load is refused
    before its statement could run in a transform."""
    view, _ = trained.fresh("1")
    digest = trained.tags(trained.settings, "1")["model_digest"]
    version = register_forged(trained, view, genuine, digest)
    view = replace(view, dfs_tmpdir=str(on_databricks_with_a_volume))
    real_check = trust.check_copy

    def check_then_race(folder, copy, what):
        real_check(folder, copy, what)
        add_stage_to_copy(Path(copy), "org.apache.spark.ml.feature.SQLTransformer",
                          {"statement": "SELECT *, 1 AS ran FROM __THIS__"})

    monkeypatch.setattr(trust, "check_copy", check_then_race)
    with pytest.raises(UntrustedModel) as refused:
        registry.load_spark_model(view, version)
    message = str(refused.value)
    assert "Spark loaded org.apache.spark.ml.feature.SQLTransformer" in message, message
    assert "\n" not in message


def test_the_checked_copy_loads_on_databricks(trained, genuine, on_databricks_with_a_volume):  # noqa: F811
    view, _ = trained.fresh("1")
    version = register_forged(trained, view, genuine, trained.tags(trained.settings, "1")["model_digest"])
    model, _ = registry.load_spark_model(replace(view, dfs_tmpdir=str(on_databricks_with_a_volume)), version)
    assert [type(s).__name__ for s in model.stages][:2] == ["ImputerModel", "VectorAssembler"]
    assert len(list(on_databricks_with_a_volume.iterdir())) == 1
