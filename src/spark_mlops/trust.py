"""Only models this project built are loaded: a version's files are checked before anything of
them is imported.

A Spark model is code. ``mlflow.spark.load_model`` puts a model's ``code`` folder first on Python's
import path, imports a ``pyspark.ml.connect`` model class named in ``MLmodel``, and pyspark imports
each pipeline stage's class by the name in the stage's metadata. So before ``validate``,
``deploy-model``, ``score`` or ``monitor`` use a version, its downloaded folder must pass, reading
files as text only (YAML and JSON, nothing imported):

1. ``MLmodel`` has exactly the flavors ``train`` writes (``python_function`` loaded by
   ``mlflow.spark``, and ``spark`` with model class ``pyspark.ml.pipeline.PipelineModel`` and its
   data in ``sparkml``), and no flavor names a ``code`` folder; the folder has no ``code`` folder;
2. every Spark ML metadata file under ``sparkml/`` (the pipeline's and each stage's, nested ones
   too) names a class of ``org.apache.spark.ml.`` or ``pyspark.ml.``;
3. the file manifest (:data:`MANIFEST_FILE`, written by ``train`` beside ``MLmodel``) hashes to the
   version's ``model_digest`` tag, and every file of the folder is in it with that content, no
   file more and none missing.

Any failure raises :class:`UntrustedModel` (exit 9) with one line naming what was found.

The digest is sha256 over the manifest, which lists the sha256 of every file by its relative path;
the manifest itself and ``registered_model_meta`` (which MLflow writes into a folder when it
downloads ``models:/`` URIs, ``mlflow/store/artifact/models_artifact_repo.py``) are not in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from spark_mlops.errors import UntrustedModel

MANIFEST_FILE = "files.sha256.json"
MANIFEST_FORMAT = 1
BASELINE_FILE = "baseline.json"  # the monitoring baseline, part of the version's files
NOT_HASHED = (MANIFEST_FILE, "registered_model_meta")
SPARK_DATA = "sparkml"
ALLOWED_CLASS_PREFIXES = ("org.apache.spark.ml.", "pyspark.ml.")
PIPELINE_MODEL_CLASS = "pyspark.ml.pipeline.PipelineModel"
EXPECTED_FLAVORS = {"python_function", "spark"}
CHUNK = 1 << 20


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


def write_manifest(folder: str | Path) -> str:
    """Write the manifest of ``folder`` (every file but the manifest) and return the model digest."""
    folder = Path(folder)
    data = _manifest_bytes(_hashed(folder))
    (folder / MANIFEST_FILE).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def check_model_folder(folder: str | Path, expected_digest: str | None, what: str) -> None:
    """Raise :class:`UntrustedModel` unless ``folder`` is a model ``train`` built, unchanged.

    ``what`` names the version in messages (e.g. ``models:/m/3``). Reads text files only."""
    folder = Path(folder)
    _check_mlmodel(folder, what)
    _check_stage_classes(folder, what)
    _check_digest(folder, expected_digest, what)


def _refuse(what: str, detail: str) -> UntrustedModel:
    return UntrustedModel(f"{what} was not loaded: {detail}; only models built by `spark-mlops train` are loaded")


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
    """The class named by every Spark ML metadata file under ``sparkml/``: relative path -> class."""
    root = Path(folder) / SPARK_DATA
    found: dict[str, str] = {}
    for part in sorted(root.rglob("metadata/part-*")):
        if not part.is_file():
            continue
        rel = part.relative_to(folder).as_posix()
        try:
            first = part.read_text(encoding="utf-8").splitlines()[0]
            found[rel] = str(json.loads(first)["class"])
        except (OSError, UnicodeDecodeError, IndexError, ValueError, KeyError, TypeError):
            found[rel] = "<unreadable>"
    return found


def _check_stage_classes(folder: Path, what: str) -> None:
    classes = stage_classes(folder)
    if not (folder / SPARK_DATA / "metadata").is_dir() or not classes:
        raise _refuse(what, f"its files have no Spark ML pipeline metadata under {SPARK_DATA}/metadata")
    for rel, name in classes.items():
        if not name.startswith(ALLOWED_CLASS_PREFIXES):
            raise _refuse(what, f"{rel} names class {name!r}, which is not from pyspark.ml or org.apache.spark.ml")


def _check_digest(folder: Path, expected: str | None, what: str) -> None:
    if not expected:
        raise _refuse(what, "the version has no model_digest tag (train records one)")
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        raise _refuse(what, f"its files have no manifest ({MANIFEST_FILE})")
    data = manifest.read_bytes()
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
