"""Only models we built are loaded (issue 22): a version's files are checked before anything of them
is imported. Forged folders are made from a real trained version's files, the way someone with
write access to the registry would make them: a code folder, a foreign pipeline stage, a changed
file, each registered with a digest tag that matches its own manifest."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from spark_mlops import registry, trust
from spark_mlops import registry_tags as rt
from spark_mlops.constants import EXIT_UNTRUSTED_MODEL
from spark_mlops.errors import UntrustedModel
from tests.conftest import FIXTURES, released, run_cli

FOREIGN_MODULE = "spark_mlops_foreign_stage"


@pytest.fixture
def genuine(trained, tmp_path) -> Path:
    """The files of the trained good version, as a load downloads them (checked)."""
    folder = registry.checked_files(trained.settings, "1", str(tmp_path / "download"))
    copy = tmp_path / "genuine"
    shutil.copytree(folder, copy)
    return copy


def foreign_module_source(marker: Path) -> str:
    """A pipeline stage class whose module leaves a marker file when Python imports it."""
    return (f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
            "from pyspark.ml import Transformer\nclass Stage(Transformer):\n"
            "    def _transform(self, dataset):\n        return dataset\n")


def add_foreign_stage(folder: Path, class_name: str) -> None:
    """A fourth pipeline stage whose metadata names ``class_name``, loaded by Python's reader."""
    meta_dir = folder / trust.SPARK_DATA / "metadata"
    part = next(meta_dir.glob("part-*"))
    pipeline = json.loads(part.read_text().splitlines()[0])
    uid = f"Stage_{uuid.uuid4().hex[:12]}"
    pipeline["class"] = "pyspark.ml.pipeline.PipelineModel"
    pipeline["paramMap"] = {**pipeline.get("paramMap", {}), "language": "Python", "stageUids": [
        *pipeline["paramMap"]["stageUids"], uid]}
    part.write_text(json.dumps(pipeline) + "\n")
    stage = folder / trust.SPARK_DATA / "stages" / f"{len(pipeline['paramMap']['stageUids']) - 1}_{uid}" / "metadata"
    stage.mkdir(parents=True)
    (stage / "part-00000").write_text(json.dumps({"class": class_name, "timestamp": 0, "sparkVersion": "4.1.4",
                                                  "uid": uid, "paramMap": {}, "defaultParamMap": {}}) + "\n")


def forge(folder: Path) -> str:
    """What a forger does after changing the files: a fresh manifest, and its digest for the tag."""
    return trust.write_manifest(folder)


def register_forged(trained, view, folder: Path, digest: str) -> str:
    created = trained.client.create_model_version(view.model_name, source=folder.as_uri(),
                                                  tags={rt.MODEL_DIGEST: digest})
    return str(created.version)


# ---------------------------------------------------------------- the checks, on folders


def test_the_files_train_wrote_pass(trained, genuine):
    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    trust.check_model_folder(genuine, digest, "v1")
    classes = set(trust.stage_classes(genuine).values())
    assert "org.apache.spark.ml.PipelineModel" in classes and len(classes) >= 4
    assert (genuine / trust.BASELINE_FILE).is_file()  # the baseline travels inside the version


def test_a_code_folder_is_refused_before_anything_is_imported(genuine, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    (genuine / "code").mkdir()
    (genuine / "code" / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    mlmodel = yaml.safe_load((genuine / "MLmodel").read_text())
    mlmodel["flavors"]["spark"]["code"] = "code"
    (genuine / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage")
    with pytest.raises(UntrustedModel, match=r"contain a code folder \(code/\)"):
        trust.check_model_folder(genuine, forge(genuine), "models:/m/4")
    shutil.rmtree(genuine / "code")  # the flavor entry alone is refused too
    with pytest.raises(UntrustedModel, match="flavor spark names a code folder"):
        trust.check_model_folder(genuine, forge(genuine), "models:/m/4")
    assert not marker.exists() and FOREIGN_MODULE not in sys.modules


def test_a_foreign_stage_class_is_refused_though_its_module_is_importable(genuine, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    monkeypatch.syspath_prepend(str(modules))
    add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage")
    with pytest.raises(UntrustedModel) as refused:
        trust.check_model_folder(genuine, forge(genuine), "models:/m/4")
    message = str(refused.value)
    assert f"names class '{FOREIGN_MODULE}.Stage', which is not from pyspark.ml or org.apache.spark.ml" in message
    assert "\n" not in message
    assert not marker.exists() and FOREIGN_MODULE not in sys.modules


def test_changed_extra_or_missing_files_and_a_wrong_digest_are_refused(trained, genuine):
    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    baseline = genuine / trust.BASELINE_FILE
    original = baseline.read_bytes()
    baseline.write_bytes(original.replace(b'"null_rate"', b'"null_rate" ', 1))  # a forged baseline hides drift
    with pytest.raises(UntrustedModel, match=r"1 file\(s\) differ from its manifest, e\.g\. baseline\.json"):
        trust.check_model_folder(genuine, digest, "v1")
    baseline.write_bytes(original)
    (genuine / "extra.py").write_text("print('hi')\n")
    with pytest.raises(UntrustedModel, match=r"not in its manifest, e\.g\. extra\.py"):
        trust.check_model_folder(genuine, digest, "v1")
    (genuine / "extra.py").unlink()
    (genuine / "requirements.txt").unlink()
    with pytest.raises(UntrustedModel, match=r"missing, e\.g\. requirements\.txt"):
        trust.check_model_folder(genuine, digest, "v1")
    with pytest.raises(UntrustedModel, match="does not match the version's model_digest tag"):
        trust.check_model_folder(genuine, "0" * 64, "v1")
    with pytest.raises(UntrustedModel, match="has no model_digest tag"):
        trust.check_model_folder(genuine, None, "v1")


def test_hadoops_checksum_files_may_be_lost_in_transit(trained, genuine, spark):
    """An artifact store that drops hidden files on upload leaves a good version loadable and trusted."""
    from pyspark.ml import PipelineModel

    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    checksums = [p for p in genuine.rglob(".*.crc") if p.is_file()]
    assert checksums  # Spark wrote them beside its part files
    for path in checksums:
        path.unlink()
    trust.check_model_folder(genuine, digest, "v1")
    assert len(PipelineModel.load(str(genuine / trust.SPARK_DATA)).stages) >= 3


# ---------------------------------------------------------------- through the commands


def test_validate_score_monitor_and_deploy_refuse_a_forged_version_with_exit_9(trained, genuine, tmp_path, capsys):
    marker = tmp_path / "imported.txt"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    sys.path.insert(0, str(modules))
    try:
        add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage")
        staging, staging_args = released(trained, "1", name=f"staging.ml.m_{uuid.uuid4().hex[:8]}")
        forged = register_forged(trained, staging, genuine, forge(genuine))
        capsys.readouterr()
        assert run_cli("validate", *staging_args, "--version", forged) == EXIT_UNTRUSTED_MODEL
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "was not loaded" in err and f"{FOREIGN_MODULE}.Stage" in err
        # Made @champion by hand (no promote would): score and deploy-model refuse it too.
        trained.client.set_registered_model_alias(staging.model_name, "champion", forged)
        registry.set_tags(staging, forged, {rt.VALIDATION_STATUS: rt.PASSED,
                                            rt.VALIDATION_MODEL_NAME: staging.model_name,
                                            rt.VALIDATION_RUN_ID: trained.tags(staging, "1")[rt.VALIDATION_RUN_ID]})
        assert run_cli("score", *staging_args, "--input", str(FIXTURES / "scoring_batch.csv"),
                       "--batch-id", "forged") == EXIT_UNTRUSTED_MODEL
        prod_name = staging.model_name.replace("staging.", "prod.")
        assert run_cli("deploy-model", *trained.common, "--model-name", prod_name,
                       "--source-model-name", staging.model_name) == EXIT_UNTRUSTED_MODEL
        assert registry.versions(replace(staging, model_name=prod_name)) == []  # nothing was copied
        assert not marker.exists() and FOREIGN_MODULE not in sys.modules
    finally:
        sys.path.remove(str(modules))


def test_monitor_reads_the_baseline_only_from_the_versions_checked_files(trained, genuine):
    view, _ = trained.fresh("1")
    assert registry.read_version_file(view, "1", trust.BASELINE_FILE)["format"] == 1
    baseline = json.loads((genuine / trust.BASELINE_FILE).read_text())
    baseline["features"]["Glucose"]["mean"] += 50
    (genuine / trust.BASELINE_FILE).write_text(json.dumps(baseline))
    forged = register_forged(trained, view, genuine, trained.tags(view, "1")[rt.MODEL_DIGEST])
    with pytest.raises(UntrustedModel, match="baseline.json"):
        registry.read_version_file(view, forged, trust.BASELINE_FILE)


ATTACK = r'''
import os, sys
from pathlib import Path
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
step, genuine, out = sys.argv[1], sys.argv[2], sys.argv[3]
import mlflow.spark
if step == "build":
    sys.path.insert(0, str(Path(out).parent / "site"))
    from foreign_stage_module import Stage
    from pyspark.ml import PipelineModel
    real = mlflow.spark.load_model(genuine)
    forged = PipelineModel(stages=[*real.stages, Stage()])
    mlflow.spark.save_model(forged, out, code_paths=[str(Path(out).parent / "site" / "foreign_stage_module.py")])
else:  # what a load without the check does
    mlflow.spark.load_model(out)
'''


@pytest.mark.slow
def test_the_attack_runs_code_when_loaded_without_the_check_and_is_refused_with_it(trained, genuine, tmp_path,
                                                                                   capsys):
    """The issue's attack, built for real: a fourth pipeline stage whose class lives in the model's
    own code folder. Loaded by MLflow as it is, it runs; validate refuses it before any import."""
    import os
    import subprocess

    marker = tmp_path / "imported.txt"
    site = tmp_path / "site"
    site.mkdir()
    (site / "foreign_stage_module.py").write_text(
        "import os\nfrom pathlib import Path\n"
        "if os.environ.get('FOREIGN_MARKER'):\n    Path(os.environ['FOREIGN_MARKER']).write_text('imported')\n"
        "from pyspark.ml import Transformer\nfrom pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable\n"
        "class Stage(Transformer, DefaultParamsReadable, DefaultParamsWritable):\n"
        "    def _transform(self, dataset):\n        return dataset\n")
    forged = tmp_path / "forged"
    env = {k: v for k, v in os.environ.items() if k != "FOREIGN_MARKER"}
    for step, extra in (("build", {}), ("load", {"FOREIGN_MARKER": str(marker)})):
        done = subprocess.run([sys.executable, "-c", ATTACK, step, str(genuine), str(forged)], env={**env, **extra},
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    assert marker.read_text() == "imported"  # without the check, loading the model ran its code
    marker.unlink()
    (forged / "code" / "foreign_stage_module.py").write_text(
        (forged / "code" / "foreign_stage_module.py").read_text().replace(
            "if os.environ.get('FOREIGN_MARKER')", f"if {str(marker)!r}"
        ).replace("Path(os.environ['FOREIGN_MARKER'])", f"Path({str(marker)!r})"))
    view, args = trained.fresh("1")
    version = register_forged(trained, view, forged, forge(forged))
    capsys.readouterr()
    assert run_cli("validate", *args, "--version", version) == EXIT_UNTRUSTED_MODEL
    assert "contain a code folder (code/)" in capsys.readouterr().err
    assert not marker.exists() and "foreign_stage_module" not in sys.modules


def test_a_versions_files_are_found_without_mlflows_process_wide_registry(trained, tmp_path, monkeypatch):
    """A task in a process of its own has set no process-wide registry URI: downloads must not use it
    (found by running the demo story with one process per task)."""
    import mlflow

    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    folder = registry.checked_files(trained.settings, "1", str(tmp_path / "files"))
    assert (folder / trust.BASELINE_FILE).is_file()
