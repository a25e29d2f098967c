"""Only models we built are loaded (issues 22 and 27): a version's files are checked, the way Spark
will read them, before anything of them is imported or any Spark job reads them, and they must
carry train's signature. Forged folders are made from a real trained version's files, the way
someone with write access to the registry or its storage would make them: a code folder, a foreign
pipeline stage, a metadata file Spark reads but a ``part-*`` glob does not, a uid Spark expands as
a glob, a SQLTransformer, a changed file; each registered with a manifest and digest tag of its
own, and signed with the forger's own key (they do not hold the training key)."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from spark_mlops import registry, signing, trust
from spark_mlops import registry_tags as rt
from spark_mlops.constants import EXIT_UNTRUSTED_MODEL
from spark_mlops.errors import ConfigError, UntrustedModel
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


def add_foreign_stage(folder: Path, class_name: str, *, python_pipeline: bool = True, prefix: str = "Stage",
                      params: dict | None = None, metadata_file: str = "part-00000") -> Path:
    """A fourth pipeline stage whose metadata names ``class_name``; with ``python_pipeline`` the
    pipeline's metadata says it was written by pyspark (``"language": "Python"``). Returns the
    stage's folder."""
    meta_dir = folder / trust.SPARK_DATA / "metadata"
    part = next(meta_dir.glob("part-*"))
    pipeline = json.loads(part.read_text().splitlines()[0])
    uid = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if python_pipeline:
        pipeline["class"] = "pyspark.ml.pipeline.PipelineModel"
        pipeline["paramMap"]["language"] = "Python"
    pipeline["paramMap"]["stageUids"] = [*pipeline["paramMap"]["stageUids"], uid]
    rewrite(part, json.dumps(pipeline) + "\n")
    stage = folder / trust.SPARK_DATA / "stages" / f"{len(pipeline['paramMap']['stageUids']) - 1}_{uid}"
    (stage / "metadata").mkdir(parents=True)
    (stage / "metadata" / metadata_file).write_text(json.dumps(
        {"class": class_name, "timestamp": 0, "sparkVersion": "4.1.4", "uid": uid, "paramMap": params or {},
         "defaultParamMap": {}}) + "\n")
    return stage


def forge(folder: Path) -> str:
    """What a forger does after changing the files: a fresh manifest signed with a key of their
    own (they do not hold the training key), and its digest for the tag."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return trust.write_manifest(folder, Ed25519PrivateKey.generate())


def sign_as_train(trained, folder: Path) -> str:
    """A fresh manifest signed with the training key: what only the training identity can do. The
    structural checks must refuse a crafted folder even then (a stolen key, or a bug in train)."""
    return trust.write_manifest(folder, signing.signing_key(trained.settings.state_dir, on_databricks=False))


def trusted(trained) -> signing.TrustedKeys:
    return signing.trusted_keys(trained.settings.state_dir)


def check(trained, folder: Path, digest: str | None, what: str = "models:/m/4") -> None:
    trust.check_model_folder(folder, digest, what, trusted(trained))


def register_forged(trained, view, folder: Path, digest: str) -> str:
    created = trained.client.create_model_version(view.model_name, source=folder.as_uri(),
                                                  tags={rt.MODEL_DIGEST: digest})
    return str(created.version)


# ---------------------------------------------------------------- the checks, on folders


def test_the_files_train_wrote_pass(trained, genuine):
    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    check(trained, genuine, digest, "v1")
    classes = set(trust.stage_classes(genuine).values())
    assert "org.apache.spark.ml.PipelineModel" in classes and len(classes) >= 4
    assert classes <= set(trust.ALLOWED_STAGES)
    assert (genuine / signing.SIGNATURE_FILE).is_file()
    assert (genuine / trust.BASELINE_FILE).is_file()  # the baseline travels inside the version


def test_a_code_folder_is_refused_before_anything_is_imported(trained, genuine, tmp_path):
    marker = tmp_path / "imported.txt"
    (genuine / "code").mkdir()
    (genuine / "code" / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    mlmodel = yaml.safe_load((genuine / "MLmodel").read_text())
    mlmodel["flavors"]["spark"]["code"] = "code"
    (genuine / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage")
    with pytest.raises(UntrustedModel, match=r"contain a code folder \(code/\)"):
        check(trained, genuine, forge(genuine))
    shutil.rmtree(genuine / "code")  # the flavor entry alone is refused too
    with pytest.raises(UntrustedModel, match="flavor spark names a code folder"):
        check(trained, genuine, forge(genuine))
    assert not marker.exists() and FOREIGN_MODULE not in sys.modules


def test_a_foreign_stage_class_is_refused_though_its_module_is_importable(trained, genuine, tmp_path,
                                                                         monkeypatch):
    marker = tmp_path / "imported.txt"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    monkeypatch.syspath_prepend(str(modules))
    add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage", python_pipeline=False)
    with pytest.raises(UntrustedModel) as refused:
        check(trained, genuine, sign_as_train(trained, genuine))  # even signed with the training key
    message = str(refused.value)
    assert f"names class '{FOREIGN_MODULE}.Stage', expected a class of the pipelines train builds" in message
    assert "\n" not in message
    assert not marker.exists() and FOREIGN_MODULE not in sys.modules


def test_changed_extra_or_missing_files_and_a_wrong_digest_are_refused(trained, genuine):
    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    baseline = genuine / trust.BASELINE_FILE
    original = baseline.read_bytes()
    baseline.write_bytes(original.replace(b'"null_rate"', b'"null_rate" ', 1))  # a forged baseline hides drift
    with pytest.raises(UntrustedModel, match=r"1 file\(s\) differ from its manifest, e\.g\. baseline\.json"):
        check(trained, genuine, digest, "v1")
    baseline.write_bytes(original)
    (genuine / "extra.py").write_text("print('hi')\n")
    with pytest.raises(UntrustedModel, match=r"not in its manifest, e\.g\. extra\.py"):
        check(trained, genuine, digest, "v1")
    (genuine / "extra.py").unlink()
    (genuine / "requirements.txt").unlink()
    with pytest.raises(UntrustedModel, match=r"missing, e\.g\. requirements\.txt"):
        check(trained, genuine, digest, "v1")
    with pytest.raises(UntrustedModel, match="does not match the version's model_digest tag"):
        check(trained, genuine, "0" * 64, "v1")
    with pytest.raises(UntrustedModel, match="has no model_digest tag"):
        check(trained, genuine, None, "v1")


def test_hadoops_checksum_files_may_be_lost_in_transit(trained, genuine, spark):
    """An artifact store that drops hidden files on upload leaves a good version loadable and trusted."""
    from pyspark.ml import PipelineModel

    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    checksums = [p for p in genuine.rglob(".*.crc") if p.is_file()]
    assert checksums  # Spark wrote them beside its part files
    for path in checksums:
        path.unlink()
    check(trained, genuine, digest, "v1")
    assert len(PipelineModel.load(str(genuine / trust.SPARK_DATA)).stages) >= 3


def test_every_classifier_train_offers_passes_the_check(spark, tmp_path):
    """The allow-list is what Spark writes for each pipeline train builds: every --classifier,
    fitted and saved as train saves it, passes; its classes and folders are on the list."""
    import mlflow.spark
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from spark_mlops import contract as dc
    from spark_mlops import model

    contract = dc.load_contract(None)
    frame = spark.read.csv(str(FIXTURES / "diabetes_train.csv"), header=True, inferSchema=True).limit(200)
    frame = frame.select(*[frame[c].cast("double") for c in contract.feature_names], frame[contract.label])
    key = Ed25519PrivateKey.generate()
    keys = signing.parse_public_keys(signing.public_key_text(signing.raw_public(key)), "test")
    for classifier in sorted(model.CLASSIFIERS):
        fitted = model.build_pipeline(contract, classifier, {"maxIter": 2} if classifier != "random_forest"
                                      else {"numTrees": 2}).fit(frame)
        folder = tmp_path / classifier
        mlflow.spark.save_model(fitted, str(folder), pip_requirements=["pyspark"])
        trust.check_model_folder(folder, trust.write_manifest(folder, key), classifier, keys)
        assert len(set(trust.stage_classes(folder).values())) == 4


def structural(trained, genuine, change, what: str = "models:/m/4") -> str:
    """Apply ``change`` to the trained files, sign them with the training key, and return the
    refusal: only the structural checks stand between such a folder and Spark."""
    change(genuine)
    with pytest.raises(UntrustedModel) as refused:
        check(trained, genuine, sign_as_train(trained, genuine), what)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{what} was not loaded: ")
    return message


def pipeline_part(folder: Path) -> Path:
    return next((folder / trust.SPARK_DATA / "metadata").glob("part-*"))


def rewrite(path: Path, text: str) -> None:
    """Replace a file's content as a forger would: with its Hadoop checksum sidecar removed, since
    a stale one fails Spark's read and a missing one is not checked."""
    path.write_text(text)
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)


def rewrite_json(part: Path, change) -> None:
    metadata = json.loads(part.read_text())
    change(metadata)
    rewrite(part, json.dumps(metadata) + "\n")


def stage_folder(folder: Path, index: int) -> Path:
    return next((folder / trust.SPARK_DATA / "stages").glob(f"{index}_*"))


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(lambda f: rewrite_json(pipeline_part(f), lambda m: m["paramMap"].update(language="Python")),
                 "sparkml/metadata has a 'language' param", id="language-param"),
    pytest.param(lambda f: rewrite_json(next((stage_folder(f, 1) / "metadata").glob("part-*")),
                                        lambda m: m["defaultParamMap"].update(language="Python")),
                 "has a 'language' param", id="language-default-param"),
    pytest.param(lambda f: (pipeline_part(f).parent / "metadata.json").write_text(pipeline_part(f).read_text()),
                 "sparkml/metadata holds 'metadata.json', which Spark would also read as metadata",
                 id="second-metadata-file"),
    pytest.param(lambda f: (pipeline_part(f).parent / "part-00001").write_text(pipeline_part(f).read_text()),
                 "sparkml/metadata holds 2 part files, expected exactly 1", id="second-part-file"),
    pytest.param(lambda f: (pipeline_part(f).parent / "nested=1").mkdir(),
                 "sparkml/metadata holds 'nested=1'", id="partition-folder-in-metadata"),
    pytest.param(lambda f: (stage_folder(f, 0) / "data" / "extra=1").mkdir(),
                 "holds 'extra=1', which Spark's parquet writer does not write", id="partition-folder-in-data"),
    pytest.param(lambda f: rewrite(pipeline_part(f), pipeline_part(f).read_text() + '{"class": "x"}\n'),
                 "cannot be read as Spark ML metadata (2 lines, expected 1)", id="two-lines"),
    pytest.param(lambda f: shutil.copytree(stage_folder(f, 1), stage_folder(f, 1).with_name("3_" + stage_folder(
        f, 1).name[2:])), "which are not one folder per stage uid", id="stage-folder-not-in-stage-uids"),
    pytest.param(lambda f: shutil.rmtree(stage_folder(f, 1)), "which are not one folder per stage uid",
                 id="stage-folder-missing"),
    pytest.param(lambda f: stage_folder(f, 1).rename(stage_folder(f, 1).with_name("1_VectorAssembler_[0-9a-f]")),
                 "holds '[]', which Spark would expand as a glob pattern", id="glob-in-a-folder-name"),
    pytest.param(lambda f: (stage_folder(f, 2) / "treesMetadata").rename(stage_folder(f, 2) / "extra"),
                 "holds 'extra', which a RandomForestClassificationModel does not write", id="unknown-stage-folder"),
    pytest.param(lambda f: rewrite_json(next((stage_folder(f, 1) / "metadata").glob("part-*")),
                                        lambda m: m.update(uid="VectorAssembler_other")),
                 "has uid 'VectorAssembler_other', expected VectorAssembler_ and 12 hex digits", id="uid-form"),
    pytest.param(lambda f: rewrite_json(next((stage_folder(f, 1) / "metadata").glob("part-*")),
                                        lambda m: m.update(uid="VectorAssembler_" + "0" * 12)),
                 "has uid 'VectorAssembler_000000000000', expected 'VectorAssembler_", id="uid-not-its-folder"),
    pytest.param(lambda f: rewrite_json(next((stage_folder(f, 1) / "metadata").glob("part-*")),
                                        lambda m: m.update({"class": "org.apache.spark.ml.feature.RFormulaModel"})),
                 "names class 'org.apache.spark.ml.feature.RFormulaModel', expected a class of the pipelines",
                 id="rformula"),
    pytest.param(lambda f: rewrite_json(pipeline_part(f), lambda m: m.update({"class": "pyspark.ml.pipeline.PipelineModel"})),
                 "names class 'pyspark.ml.pipeline.PipelineModel', expected org.apache.spark.ml.PipelineModel",
                 id="python-pipeline"),
])
def test_what_spark_would_read_beyond_what_train_writes_is_refused(trained, genuine, change, expected):
    assert expected in structural(trained, genuine, change)


def test_the_signature_is_checked_against_the_configured_keys_only(trained, genuine, monkeypatch):
    """The trusted keys come from the deployment's configuration (the bundle variable, locally the
    state folder), never from the version; several may be trusted at once during a rotation."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    train_key = (trained.settings.state_dir / signing.LOCAL_KEY_FOLDER / signing.LOCAL_PUBLIC_KEY).read_text().strip()
    other = signing.public_key_text(signing.raw_public(Ed25519PrivateKey.generate()))
    monkeypatch.setenv(signing.TRUSTED_KEYS_ENV, other)
    with pytest.raises(UntrustedModel, match=rf"signed by key '[0-9a-f]{{16}}', which is not a trusted key "
                                             rf"\({signing.TRUSTED_KEYS_ENV}\)"):
        check(trained, genuine, digest, "v1")
    monkeypatch.setenv(signing.TRUSTED_KEYS_ENV, f"{other},\n{train_key}")  # a rotation: old and new trusted
    check(trained, genuine, digest, "v1")
    monkeypatch.setenv(signing.TRUSTED_KEYS_ENV, "ed25519:not-a-key")
    with pytest.raises(ConfigError, match="is not a public key"):
        signing.trusted_keys(trained.settings.state_dir)
    monkeypatch.delenv(signing.TRUSTED_KEYS_ENV)
    with pytest.raises(UntrustedModel, match="no public key to verify model signatures is configured"):
        trust.check_model_folder(genuine, digest, "v1", signing.trusted_keys(genuine))  # a folder with no keys


def test_a_version_without_a_valid_signature_is_refused(trained, genuine):
    digest = trained.tags(trained.settings, "1")[rt.MODEL_DIGEST]
    signature = genuine / signing.SIGNATURE_FILE
    original = signature.read_bytes()
    document = json.loads(original)
    document["signature"] = base64.b64encode(bytes(64)).decode()
    signature.write_text(json.dumps(document))
    with pytest.raises(UntrustedModel, match="its signature does not verify with trusted key"):
        check(trained, genuine, digest, "v1")
    signature.write_text("{")
    with pytest.raises(UntrustedModel, match="signature file files.sha256.json.sig cannot be read"):
        check(trained, genuine, digest, "v1")
    signature.unlink()
    with pytest.raises(UntrustedModel) as refused:
        check(trained, genuine, digest, "v1")
    assert "it has no signature (files.sha256.json.sig): train signs every model it registers" in str(refused.value)


def test_train_has_no_key_on_databricks_unless_the_secret_is_referenced(tmp_path, monkeypatch):
    """On Databricks the key comes only from the secret (no key pair is made on a cluster); locally
    the first train makes one, its private half readable by its owner only."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    with pytest.raises(ConfigError, match=f"{signing.PRIVATE_KEY_ENV} is not set"):
        signing.signing_key(tmp_path, on_databricks=True)
    assert not (tmp_path / signing.LOCAL_KEY_FOLDER).exists()
    ec = generate_private_key(SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
    monkeypatch.setenv(signing.PRIVATE_KEY_ENV, ec.decode())
    with pytest.raises(ConfigError, match="takes an Ed25519 key"):
        signing.signing_key(tmp_path, on_databricks=True)
    monkeypatch.delenv(signing.PRIVATE_KEY_ENV)
    key = signing.signing_key(tmp_path, on_databricks=False)
    private = tmp_path / signing.LOCAL_KEY_FOLDER / signing.LOCAL_PRIVATE_KEY
    assert private.stat().st_mode & 0o077 == 0
    assert signing.raw_public(signing.signing_key(tmp_path, on_databricks=False)) == signing.raw_public(key)
    assert list(signing.trusted_keys(tmp_path).keys) == [signing.key_id(signing.raw_public(key))]


# ---------------------------------------------------------------- through the commands


def test_validate_score_monitor_and_deploy_refuse_a_forged_version_with_exit_9(trained, genuine, tmp_path, capsys):
    marker = tmp_path / "imported.txt"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    sys.path.insert(0, str(modules))
    try:
        add_foreign_stage(genuine, f"{FOREIGN_MODULE}.Stage", python_pipeline=False)
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


def hidden_metadata_stage(folder: Path, marker: Path) -> None:
    """Attack (a): the pipeline's ``part-*`` file is left as train wrote it; a second metadata file
    beside it, larger (Spark reads the largest split first), adds ``"language": "Python"`` and a
    fourth stage, whose only metadata file is not named ``part-*`` either and names a module."""
    part = pipeline_part(folder)
    pipeline = json.loads(part.read_text())
    uid = f"Stage_{uuid.uuid4().hex[:12]}"
    pipeline["paramMap"].update(language="Python", stageUids=[*pipeline["paramMap"]["stageUids"], uid])
    pipeline["padding"] = " " * 4096
    (part.parent / "metadata.json").write_text(json.dumps(pipeline) + "\n")
    stage = folder / trust.SPARK_DATA / "stages" / f"3_{uid}" / "metadata"
    stage.mkdir(parents=True)
    (stage / "metadata.json").write_text(json.dumps({"class": f"{FOREIGN_MODULE}.Stage", "timestamp": 0,
                                                     "sparkVersion": "4.1.4", "uid": uid, "paramMap": {},
                                                     "defaultParamMap": {}}) + "\n")


def glob_uid_stage(folder: Path, marker: Path) -> None:
    """Attack (a), glob variant: the pipeline names a stage uid with brackets. The folder of that
    literal name holds an innocent part file (what a Python reader of ``part-*`` sees); Spark
    expands ``[e]`` and reads the folder without brackets, whose metadata names a module."""
    part = pipeline_part(folder)
    pipeline = json.loads(part.read_text())
    uid = "Stage_[e]vil"
    pipeline["paramMap"]["stageUids"] = [*pipeline["paramMap"]["stageUids"], uid]
    rewrite(part, json.dumps(pipeline) + "\n")
    stages = folder / trust.SPARK_DATA / "stages"
    shutil.copytree(stage_folder(folder, 1), stages / f"3_{uid}")
    (stages / "3_Stage_evil" / "metadata").mkdir(parents=True)
    (stages / "3_Stage_evil" / "metadata" / "metadata.json").write_text(json.dumps(
        {"class": f"{FOREIGN_MODULE}.Stage", "timestamp": 0, "sparkVersion": "4.1.4", "uid": "Stage_evil",
         "paramMap": {}, "defaultParamMap": {}}) + "\n")


def sql_transformer_stage(folder: Path, marker: Path) -> None:
    """Attack (b): Spark ML's own SQLTransformer, whose statement runs when the pipeline's schema is
    checked: here it writes a folder; it could as well copy or drop tables as the loading identity."""
    statement = f"INSERT OVERWRITE DIRECTORY '{marker}' USING text SELECT 'exfiltrated' AS value"
    add_foreign_stage(folder, "org.apache.spark.ml.feature.SQLTransformer", python_pipeline=False,
                      prefix="SQLTransformer", params={"statement": statement})


@pytest.mark.parametrize(("attack", "refusal"), [
    pytest.param(hidden_metadata_stage, "sparkml/metadata holds 'metadata.json', which Spark would also read",
                 id="module-stage-through-a-non-part-metadata-file"),
    pytest.param(glob_uid_stage, "which Spark would expand as a glob pattern", id="module-stage-through-a-glob-uid"),
    pytest.param(sql_transformer_stage, "names class 'org.apache.spark.ml.feature.SQLTransformer', expected a class",
                 id="exfiltrating-sql-transformer"),
])
def test_the_issue_27_attacks_are_refused_by_validate_before_anything_runs(trained, genuine, tmp_path, capsys,
                                                                          attack, refusal):
    """Each attack registered as a registry writer would (manifest and digest tag recomputed), with
    the payload importable: validate exits 9 with one line, the module was never imported and the
    statement never ran."""
    marker = tmp_path / "payload-ran"
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / f"{FOREIGN_MODULE}.py").write_text(foreign_module_source(marker))
    sys.path.insert(0, str(modules))
    try:
        attack(genuine, marker)
        view, args = trained.fresh("1")
        forged = register_forged(trained, view, genuine, forge(genuine))
        capsys.readouterr()
        code = run_cli("validate", *args, "--version", forged)
        err = capsys.readouterr().err.strip()
        assert not marker.exists() and FOREIGN_MODULE not in sys.modules, f"the payload ran: {err[-500:]}"
        assert code == EXIT_UNTRUSTED_MODEL
        assert err.count("\n") == 0 and f"models:/{view.model_name}/{forged} was not loaded" in err and refusal in err
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop(FOREIGN_MODULE, None)


def test_files_changed_after_train_are_refused_even_with_a_recomputed_manifest_and_digest(trained, genuine, capsys):
    """A changed model (a deeper forest's metadata and a baseline that hides drift), with a new
    manifest and a digest tag to match: without the training key the signature cannot follow."""
    rf = next((stage_folder(genuine, 2) / "metadata").glob("part-*"))
    rewrite_json(rf, lambda m: m["paramMap"].update(maxDepth=7))
    baseline = json.loads((genuine / trust.BASELINE_FILE).read_text())
    baseline["features"]["Glucose"]["mean"] += 50
    (genuine / trust.BASELINE_FILE).write_text(json.dumps(baseline))
    signature = genuine / signing.SIGNATURE_FILE
    train_signature = signature.read_bytes() if signature.is_file() else b""
    view, args = trained.fresh("1")
    for sign, refusal in (("sign with the forger's key", "which is not a trusted key"),
                          ("keep train's signature", "its signature does not verify with trusted key")):
        digest = forge(genuine)
        if sign == "keep train's signature":
            signature.write_bytes(train_signature)
        forged = register_forged(trained, view, genuine, digest)
        capsys.readouterr()
        assert run_cli("validate", *args, "--version", forged) == EXIT_UNTRUSTED_MODEL, sign
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and refusal in err, (sign, err)
        with pytest.raises(UntrustedModel, match=refusal):
            registry.read_version_file(view, forged, trust.BASELINE_FILE)  # monitor's read of the baseline


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
