"""Only models this project built are loaded: a version's files are checked before anything of
them is imported, and before any Spark job reads them.

A Spark model is code. ``mlflow.spark.load_model`` puts a model's ``code`` folder first on Python's
import path and imports a ``pyspark.ml.connect`` model class named in ``MLmodel``; pyspark imports
each pipeline stage's class by the name in the stage's metadata (``DefaultParamsReader.
loadParamsInstance`` in ``pyspark/ml/util.py``: any module named there is imported), and Spark ML's
own stages include ``SQLTransformer``, which runs any SQL statement while a pipeline's schema is
checked. Spark reads a stage's metadata with ``spark.read.text(<stage>/metadata)``
(``DefaultParamsReader.loadMetadata``, in pyspark and in Scala): every file of that folder whose
name does not start with ``_`` or ``.``, first line of whichever it reads first; and a stage's path
is built from its uid (``PipelineSharedReadWrite.getStagePath``: ``<index>_<uid>``), which Spark
treats as a glob pattern when it holds ``*?[]{}`` or a backslash, while Python's ``open()`` reads it
literally. So before ``validate``, ``deploy-model``, ``score`` or ``monitor`` use a version, its
downloaded folder must pass, reading files as text only (YAML and JSON, nothing imported):

1. no path of the folder holds a glob character (``*?[]{}``, backslash) or a ``..`` part, and
   nothing in it is a symbolic link;
2. ``MLmodel`` has exactly the flavors ``train`` writes (``python_function`` loaded by
   ``mlflow.spark``, and ``spark`` with model class ``pyspark.ml.pipeline.PipelineModel`` and its
   data in ``sparkml``), and no flavor names a ``code`` folder; the folder has no ``code`` folder;
3. ``sparkml/`` is exactly a pipeline ``train`` builds: every ``metadata/`` folder holds one part
   file plus Spark's markers (``_SUCCESS``, hidden ``.crc`` sidecars) and nothing else; each
   metadata names a class of :data:`ALLOWED_STAGES` (the pipeline, the imputer, the assembler,
   and the model of each classifier ``--classifier`` offers: nothing that runs SQL or reads
   files, so not ``SQLTransformer`` or ``RFormula``), with a uid of the form Spark writes
   (``<Prefix>_<12 hex digits>``) and no ``language`` param; the pipeline's ``stageUids`` are
   one-to-one with the folders of ``stages/``; each stage folder has only the folders its class
   writes;
4. the manifest (:data:`MANIFEST_FILE`) carries a valid signature by a trusted key
   (:mod:`spark_mlops.signing`: made by ``train`` with the training identity's private key,
   verified against public keys configured apart from any version), hashes to the version's
   ``model_digest`` tag, and every file of the folder is in it with that content, no file more
   and none missing.

Any failure raises :class:`UntrustedModel` (exit 9) with one line naming what was found.

Spark then reads exactly the checked files: ``registry.load_checked_pipeline`` loads them with
Spark's JVM reader (pyspark 4.1's ``PipelineModel.load`` imports every stage's Python class by
name, whatever ``language`` says), checks a DFS copy again (:func:`check_copy`) and compares the
loaded stages with the checked ones (:func:`check_loaded`).

The digest is sha256 over the manifest, which lists the sha256 of every file by its relative path;
the manifest, its signature and ``registered_model_meta`` (which MLflow writes into a folder when it
downloads ``models:/`` URIs, ``mlflow/store/artifact/models_artifact_repo.py``) are not in it. The
digest alone proves nothing (whoever writes the folder can recompute it); the signature does.
"""

from __future__ import annotations

import hashlib
import json
import re
from itertools import zip_longest
from pathlib import Path

import yaml

from spark_mlops import signing
from spark_mlops.errors import UntrustedModel

MANIFEST_FILE = "files.sha256.json"
MANIFEST_FORMAT = 1
BASELINE_FILE = "baseline.json"  # the monitoring baseline, part of the version's files
NOT_HASHED = (MANIFEST_FILE, signing.SIGNATURE_FILE, "registered_model_meta")
SPARK_DATA = "sparkml"
PIPELINE_MODEL_CLASS = "pyspark.ml.pipeline.PipelineModel"
EXPECTED_FLAVORS = {"python_function", "spark"}
CHUNK = 1 << 20

# Every class a pipeline of ``train`` holds (model.build_pipeline: Imputer -> VectorAssembler ->
# one of model.CLASSIFIERS, fitted), as Spark writes it: class -> (uid prefix, the folders its
# writer makes beside ``metadata``). tests/test_trust.py fits each classifier and holds this to
# what Spark writes. Anything else is refused, whatever its package: Spark ML's own stages include
# SQLTransformer (runs any SQL) and RFormula (parses a formula, builds nested pipelines).
PIPELINE_MODEL_STAGE = "org.apache.spark.ml.PipelineModel"
ALLOWED_STAGES: dict[str, tuple[str, frozenset[str]]] = {
    PIPELINE_MODEL_STAGE: ("PipelineModel", frozenset({"stages"})),
    "org.apache.spark.ml.feature.ImputerModel": ("Imputer", frozenset({"data"})),
    "org.apache.spark.ml.feature.VectorAssembler": ("VectorAssembler", frozenset()),
    "org.apache.spark.ml.classification.RandomForestClassificationModel":
        ("RandomForestClassifier", frozenset({"data", "treesMetadata"})),
    "org.apache.spark.ml.classification.GBTClassificationModel":
        ("GBTClassifier", frozenset({"data", "treesMetadata"})),
    "org.apache.spark.ml.classification.LogisticRegressionModel": ("LogisticRegression", frozenset({"data"})),
}
# Hadoop's glob characters (org.apache.hadoop.fs.GlobPattern; SparkHadoopUtil.isGlobPath tests
# "{}[]*?\\"): a path holding one is expanded by Spark and read literally by Python.
GLOB_CHARACTERS = frozenset("*?[]{}\\")
UID = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9]*)_[0-9a-f]{12}$")  # Identifiable.randomUID
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What Spark's text and parquet writers name their files (FileFormatWriter: part-<n>-<job uuid>-c<n>).
METADATA_PART = re.compile(rf"^part-\d{{5}}(-{_UUID}-c\d{{3}}\.txt)?$")
DATA_PART = re.compile(rf"^part-\d{{5}}-{_UUID}-c\d{{3}}(\.[a-z0-9]+)?\.parquet$")
SUCCESS_MARKER = "_SUCCESS"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    """Every regular file under ``folder`` by its relative POSIX path, hidden files included, but
    Hadoop's checksum files: see :func:`is_checksum_file`."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not is_checksum_file(p.name)}


def is_checksum_file(name: str) -> bool:
    """``.part-00000.crc`` and the like: the CRC32 sidecars Hadoop's local file system writes beside
    each file it saves. They hold no code and no model data; a missing one is simply not checked
    when the file is read (Hadoop ``ChecksumFileSystem``), and a wrong one makes the read fail. An
    artifact store may drop hidden files on upload, so they are outside the manifest: their
    absence must not make a good version untrusted."""
    return name.startswith(".") and name.endswith(".crc")


def _hashed(folder: Path) -> dict[str, str]:
    return {rel: _sha256_file(p) for rel, p in _files(folder).items() if rel not in NOT_HASHED}


def _manifest_bytes(files: dict[str, str]) -> bytes:
    return (json.dumps({"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}, sort_keys=True,
                       indent=1) + "\n").encode()


def write_manifest(folder: str | Path, private_key) -> str:
    """Write the manifest of ``folder`` (every file but the manifest) and its signature with
    ``private_key`` (:func:`spark_mlops.signing.signing_key`); return the model digest."""
    folder = Path(folder)
    data = _manifest_bytes(_hashed(folder))
    (folder / MANIFEST_FILE).write_bytes(data)
    (folder / signing.SIGNATURE_FILE).write_bytes(signing.signature_bytes(private_key, data))
    return hashlib.sha256(data).hexdigest()


def check_model_folder(folder: str | Path, expected_digest: str | None, what: str,
                       trusted: signing.TrustedKeys | None) -> None:
    """Raise :class:`UntrustedModel` unless ``folder`` is a model ``train`` built and signed, unchanged.

    ``what`` names the version in messages (e.g. ``models:/m/3``); ``trusted`` are the public keys
    configured for this deployment (:func:`spark_mlops.signing.trusted_keys`), never keys found
    in the version. Reads text files only."""
    folder = Path(folder)
    _check_paths(folder, what)
    _check_mlmodel(folder, what)
    _check_spark_pipeline(folder, what)
    _check_signature(folder, trusted, what)
    _check_digest(folder, expected_digest, what)


def _refuse(what: str, detail: str) -> UntrustedModel:
    return UntrustedModel(f"{what} was not loaded: {detail}; only models built by `spark-mlops train` are loaded")


def _check_paths(folder: Path, what: str) -> None:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise _refuse(what, f"its files contain a symbolic link ({rel})")
        glob = sorted(GLOB_CHARACTERS & set(rel))
        if glob:
            raise _refuse(what, f"the path {rel!r} holds {''.join(glob)!r}, which Spark would expand as a glob pattern")
        if ".." in rel.split("/"):
            raise _refuse(what, f"the path {rel!r} holds '..'")


def _check_mlmodel(folder: Path, what: str) -> None:
    if (folder / "code").exists():
        raise _refuse(what, "its files contain a code folder (code/), which MLflow would put on Python's import path")
    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _refuse(what, f"its MLmodel file cannot be read ({type(exc).__name__})") from None
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or set(flavors) != EXPECTED_FLAVORS:
        found = sorted(flavors) if isinstance(flavors, dict) else "none"
        raise _refuse(what, f"its MLmodel has flavors {found}, expected {sorted(EXPECTED_FLAVORS)}")
    for name, conf in flavors.items():
        if not isinstance(conf, dict):
            raise _refuse(what, f"its MLmodel flavor {name} is not a mapping")
        if conf.get("code") is not None:
            raise _refuse(what, f"its MLmodel flavor {name} names a code folder ({conf['code']!r})")
    spark, pyfunc = flavors["spark"], flavors["python_function"]
    if spark.get("model_class") != PIPELINE_MODEL_CLASS:
        raise _refuse(what, f"its MLmodel names model class {spark.get('model_class')!r}, expected {PIPELINE_MODEL_CLASS}")
    if spark.get("model_data") != SPARK_DATA or pyfunc.get("data", SPARK_DATA) != SPARK_DATA:
        raise _refuse(what, f"its MLmodel keeps the model data in {spark.get('model_data')!r}, expected {SPARK_DATA!r}")
    if pyfunc.get("loader_module") != "mlflow.spark":
        raise _refuse(what, f"its MLmodel names loader module {pyfunc.get('loader_module')!r}, expected mlflow.spark")


def stage_classes(folder: str | Path) -> dict[str, str]:
    """The class named by every Spark ML metadata part file under ``sparkml/``: relative path -> class."""
    root = Path(folder) / SPARK_DATA
    found: dict[str, str] = {}
    for part in sorted(root.rglob("metadata/part-*")):
        if part.is_file():
            try:
                found[part.relative_to(folder).as_posix()] = str(_read_metadata(part)["class"])
            except (ValueError, KeyError):
                found[part.relative_to(folder).as_posix()] = "<unreadable>"
    return found


def _read_metadata(part: Path) -> dict:
    """The JSON of a metadata part file: one line, as Spark writes it (``loadMetadata`` reads the
    first line only, so a second line would be data no check reads)."""
    try:
        lines = part.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise ValueError("unreadable") from None
    if len(lines) != 1:
        raise ValueError(f"{len(lines)} lines, expected 1")
    metadata = json.loads(lines[0])
    if not isinstance(metadata, dict):
        raise ValueError("not a JSON object")
    return metadata


def _is_marker(name: str, part: re.Pattern) -> bool:
    """``_SUCCESS`` and Hadoop's hidden checksum sidecars of the files a Spark writer makes."""
    if name == SUCCESS_MARKER:
        return True
    return is_checksum_file(name) and (name[1:-4] == SUCCESS_MARKER or bool(part.match(name[1:-4])))


def _check_spark_pipeline(folder: Path, what: str) -> None:
    root = folder / SPARK_DATA
    if not (root / "metadata").is_dir():
        raise _refuse(what, f"its files have no Spark ML pipeline metadata under {SPARK_DATA}/metadata")
    entries = sorted(p.name for p in root.iterdir())
    if entries != ["metadata", "stages"]:
        raise _refuse(what, f"{SPARK_DATA}/ holds {entries}, expected the pipeline's metadata and stages folders")
    pipeline = _check_stage(root, SPARK_DATA, what, expected_class=PIPELINE_MODEL_STAGE)
    uids = pipeline.get("paramMap", {}).get("stageUids")
    if not isinstance(uids, list) or not uids or not all(isinstance(u, str) for u in uids):
        raise _refuse(what, f"{SPARK_DATA}/metadata has no list of stage uids (stageUids)")
    # PipelineSharedReadWrite.getStagePath: the index zero-padded to the digits of the stage count.
    expected = {f"{str(i).zfill(len(str(len(uids))))}_{uid}": uid for i, uid in enumerate(uids)}
    found = sorted(p.name for p in (root / "stages").iterdir())
    if len(set(uids)) != len(uids) or sorted(expected) != found:
        raise _refuse(what, f"{SPARK_DATA}/stages holds {found}, which are not one folder per stage uid "
                            f"of its pipeline ({sorted(expected)})")
    for name, uid in expected.items():
        stage = _check_stage(root / "stages" / name, f"{SPARK_DATA}/stages/{name}", what)
        if stage["uid"] != uid:
            raise _refuse(what, f"{SPARK_DATA}/stages/{name}/metadata has uid {stage['uid']!r}, expected {uid!r}")
        if stage["class"] == PIPELINE_MODEL_STAGE:
            raise _refuse(what, f"{SPARK_DATA}/stages/{name} is a nested pipeline, which train never builds")


def _check_stage(stage: Path, rel: str, what: str, *, expected_class: str | None = None) -> dict:
    """One Spark ML stage folder (or the pipeline's own): its metadata, read as Spark will, and its
    folders. Returns the metadata."""
    meta_dir = stage / "metadata"
    if not meta_dir.is_dir():
        raise _refuse(what, f"{rel} has no metadata folder")
    parts, others = [], []
    for entry in sorted(meta_dir.iterdir()):
        if entry.is_file() and METADATA_PART.match(entry.name):
            parts.append(entry)
        elif not (entry.is_file() and _is_marker(entry.name, METADATA_PART)):
            others.append(entry.name)
    if others:
        raise _refuse(what, f"{rel}/metadata holds {others[0]!r}, which Spark would also read as metadata "
                            "(only one part file and Spark's markers are allowed)")
    if len(parts) != 1:
        raise _refuse(what, f"{rel}/metadata holds {len(parts)} part files, expected exactly 1")
    try:
        metadata = _read_metadata(parts[0])
        name, uid = metadata["class"], metadata["uid"]
        params = [metadata.get("paramMap", {}), metadata.get("defaultParamMap", {})]
        if not all(isinstance(p, dict) for p in params) or not isinstance(name, str) or not isinstance(uid, str):
            raise ValueError("wrong types")
    except (ValueError, KeyError) as exc:
        raise _refuse(what, f"{rel}/metadata/{parts[0].name} cannot be read as Spark ML metadata ({exc})") from None
    if name not in ALLOWED_STAGES or (expected_class and name != expected_class):
        expected = expected_class or "a class of the pipelines train builds"
        raise _refuse(what, f"{rel}/metadata names class {name!r}, expected {expected} "
                            "(stages that run SQL, read files or come from elsewhere are refused)")
    if any("language" in p for p in params):
        raise _refuse(what, f"{rel}/metadata has a 'language' param, which makes pyspark import stage classes by name")
    prefix, folders = ALLOWED_STAGES[name]
    match = UID.match(uid)
    if not match or match.group("prefix") != prefix:
        raise _refuse(what, f"{rel}/metadata has uid {uid!r}, expected {prefix}_ and 12 hex digits as Spark writes")
    extra = sorted({p.name for p in stage.iterdir()} - {"metadata", *folders})
    if extra:
        raise _refuse(what, f"{rel} holds {extra[0]!r}, which a {name.rsplit('.', 1)[-1]} does not write")
    for data in sorted(folders - {"stages"}):
        _check_data_folder(stage / data, f"{rel}/{data}", what)
    return metadata


def _check_data_folder(data: Path, rel: str, what: str) -> None:
    """A stage's parquet folder: part files and Spark's markers, no sub-folder (a ``k=v`` folder
    would be read as a partition)."""
    if not data.is_dir():
        raise _refuse(what, f"{rel} is missing")
    for entry in sorted(data.iterdir()):
        if not entry.is_file() or not (DATA_PART.match(entry.name) or _is_marker(entry.name, DATA_PART)):
            raise _refuse(what, f"{rel} holds {entry.name!r}, which Spark's parquet writer does not write")


def check_copy(folder: str | Path, copy: str | Path, what: str) -> None:
    """Raise :class:`UntrustedModel` unless ``copy`` holds exactly the ``sparkml/`` files of the
    checked ``folder`` (:func:`check_model_folder` passed on it), byte for byte, by the signed manifest.

    On Databricks, Spark cannot read the driver's local disk from its executors, so the checked
    ``sparkml/`` is copied to a DFS folder (a UC volume) and Spark reads that copy: whoever can
    write that storage could change it after the download was checked, so the copy is checked
    again, and what Spark then loads is compared with the check (:func:`check_loaded`)."""
    folder, copy = Path(folder), Path(copy)
    _check_paths(copy, what)
    prefix = f"{SPARK_DATA}/"
    listed = {rel[len(prefix):]: h for rel, h in json.loads((folder / MANIFEST_FILE).read_bytes())["files"].items()
              if rel.startswith(prefix) and not is_checksum_file(rel.rsplit("/", 1)[-1])}
    found = _hashed(copy)
    if found != listed:
        differing = sorted(set(found) ^ set(listed) | {r for r in set(found) & set(listed) if found[r] != listed[r]})
        raise _refuse(what, f"the copy Spark would read ({copy}) differs from its checked files, "
                            f"e.g. {SPARK_DATA}/{differing[0]}")


def check_loaded(model, folder: str | Path, what: str) -> None:
    """Raise :class:`UntrustedModel` unless the ``PipelineModel`` Spark loaded has exactly the
    stages the checked ``folder`` names (JVM class and uid, in order). Called before the model
    transforms anything: a stage that runs SQL does so only when it transforms."""
    root = Path(folder) / SPARK_DATA
    pipeline = _read_metadata(next((root / "metadata").glob("part-*")))
    uids = pipeline["paramMap"]["stageUids"]
    width = len(str(len(uids)))
    expected = [("pipeline", pipeline["uid"])]
    for i, uid in enumerate(uids):
        stage = _read_metadata(next((root / "stages" / f"{str(i).zfill(width)}_{uid}" / "metadata").glob("part-*")))
        expected.append((stage["class"], stage["uid"]))
    loaded = [("pipeline", model.uid)]
    loaded += [(getattr(s, "_java_obj", None).getClass().getName() if getattr(s, "_java_obj", None) is not None
                else f"{type(s).__module__}.{type(s).__name__}", s.uid) for s in model.stages]
    if loaded != expected:
        first = next(f"{got[0]} {got[1]}" if got else f"{len(loaded) - 1} stages"
                     for got, want in zip_longest(loaded, expected) if got != want)
        raise _refuse(what, f"Spark loaded {first}, which is not what its checked files name (its files were "
                            "changed between the check and the load)")


def _check_signature(folder: Path, trusted: signing.TrustedKeys | None, what: str) -> None:
    if trusted is None:
        raise _refuse(what, f"no public key to verify model signatures is configured ({signing.TRUSTED_KEYS_ENV}, "
                            "or the state folder's key made by the first local train)")
    manifest, signature = folder / MANIFEST_FILE, folder / signing.SIGNATURE_FILE
    if not manifest.is_file():
        raise _refuse(what, f"its files have no manifest ({MANIFEST_FILE})")
    if not signature.is_file():
        raise _refuse(what, f"it has no signature ({signing.SIGNATURE_FILE}): train signs every model it registers")
    try:
        signing.verify(signature.read_bytes(), manifest.read_bytes(), trusted)
    except signing.SignatureError as exc:
        raise _refuse(what, str(exc)) from None


def _check_digest(folder: Path, expected: str | None, what: str) -> None:
    """The signed manifest lists exactly the folder's files, and is the one the version's tag names."""
    if not expected:
        raise _refuse(what, "the version has no model_digest tag (train records one)")
    data = (folder / MANIFEST_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise _refuse(what, f"its manifest does not match the version's model_digest tag ({expected[:12]}…)")
    try:
        listed = json.loads(data)["files"]
    except (ValueError, KeyError, TypeError):
        raise _refuse(what, f"its manifest {MANIFEST_FILE} cannot be read") from None
    listed = {rel: h for rel, h in listed.items() if not is_checksum_file(rel.rsplit("/", 1)[-1])}
    found = _hashed(folder)
    extra = sorted(set(found) - set(listed))
    missing = sorted(set(listed) - set(found))
    changed = sorted(rel for rel in set(found) & set(listed) if found[rel] != listed[rel])
    if extra:
        raise _refuse(what, f"{len(extra)} file(s) not in its manifest, e.g. {extra[0]}")
    if missing:
        raise _refuse(what, f"{len(missing)} file(s) of its manifest are missing, e.g. {missing[0]}")
    if changed:
        raise _refuse(what, f"{len(changed)} file(s) differ from its manifest, e.g. {changed[0]}")
