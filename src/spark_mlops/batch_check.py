"""What ``check-batch`` learned about a batch, handed to ``score`` of the same job run.

``score`` must know whether a batch has rejects before its first write: the rejects are written
first (docs/tables.md, "What a crash leaves"), and a batch without any needs no rejects write,
only the ``DELETE`` of its old ones, so the batch is then read once, by the predictions' write.
``check-batch`` has just counted exactly that, so it leaves a record and ``score`` reads it back.

Where the record lives: an MLflow run in the job's experiment, tagged with the job run id. Wheel
tasks cannot set task values (only notebooks can: docs jobs/task-values; the SDK's fallback does
nothing), both tasks already get ``--job-run-id`` and ``--experiment``, and one
``search_runs`` is cheap; a Delta table would need a table of its own and a Spark job to read it.

What ``score`` trusts, and only all of it together: the newest finished check of THIS job run
(a repair of the run that re-checks supersedes the earlier check), made under the same data
contract, of an input whose identity (:func:`input_identity`, read without its bytes) is the one
``score`` sees now. A record of another run, another contract or a changed input is ignored, and
an input whose identity cannot be observed without reading it (a remote URI) is never vouched
for. Even then the predictions' write re-checks every row it reads (``scoring``'s guard): a change
no identity shows (a ``cp -p`` of other bytes) fails that write before its commit, and ``score``
falls back to writing the rejects first.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.tables import DeltaTables, is_path, local_path

_DIGEST_CHARS = 12
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # what is quoted into a search filter


@dataclass(frozen=True)
class InputIdentity:
    name: str  # the file (or table) name, for people
    digest: str  # SHA-256 hex of what names the input (see input_identity)
    observed: bool  # the digest changes when the content does (False: a remote URI, only its text)

    @property
    def batch_id(self) -> str:
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[: 127 - _DIGEST_CHARS] or "batch"
        return f"{readable}-{self.digest[:_DIGEST_CHARS]}"

    @property
    def fingerprint(self) -> str | None:
        """What a check record is keyed by; None when a change of content would not change it."""
        return self.digest if self.observed else None


def input_identity(source: str, settings: Settings | None = None, tables: DeltaTables | None = None) -> InputIdentity:
    """The input's identity without reading its data (``scoring.default_batch_id`` explains what
    each kind of input's digest covers)."""
    digest = hashlib.sha256()
    if not is_path(source):
        qualified = settings.table_name(source) if settings else source
        version = tables.version(qualified) if tables else None
        digest.update(qualified.encode())
        digest.update(str(version or "").encode())
        return InputIdentity(source.split(".")[-1], digest.hexdigest(), version is not None)
    path = local_path(settings, source) if settings else source
    name = PurePosixPath(source.rstrip("/")).stem
    if "://" in path or path.startswith(("dbfs:", "s3:", "abfss:")) or not os.path.exists(path):
        digest.update(path.encode())
        return InputIdentity(name, digest.hexdigest(), False)
    _digest_files(digest, Path(path).resolve())
    return InputIdentity(name, digest.hexdigest(), True)


def _digest_files(digest, path: Path) -> None:
    digest.update(str(path).encode())
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))
    )
    for file in files:
        stat = file.stat()
        name = str(file.relative_to(path) if file != path else file.name)
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())


def contract_digest(contract) -> str:
    """The parsed contract (a frozen dataclass of plain values): rejects depend on its rules."""
    return hashlib.sha256(repr(contract).encode()).hexdigest()


@dataclass(frozen=True)
class CheckRecord:
    fingerprint: str
    contract: str
    rows: int
    rejected: int


def _keyed(settings: Settings) -> bool:
    return bool(settings.job_run_id) and bool(_RUN_ID_PATTERN.match(settings.job_run_id))


def record(settings: Settings, identity: InputIdentity, contract, rows: int, rejected: int) -> None:
    """Leave a passed check for ``score`` of this job run. Nothing without a job run id (a check by
    hand has no run to hand it to) or for an input whose identity is not observed."""
    if not _keyed(settings) or identity.fingerprint is None:
        return
    import mlflow  # here: a check by hand never imports MLflow
    from mlflow.exceptions import MlflowException

    from spark_mlops import tracking

    tags = {**settings.run_tags(), rt.RUN_STEP: rt.STEP_CHECK_BATCH, rt.CHECKED_INPUT: identity.fingerprint,
            rt.CHECKED_CONTRACT: contract_digest(contract)}
    try:
        experiment_id = tracking.configure(settings)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"check-batch-{identity.batch_id}",
                              tags=tracking.safe(tags)):
            mlflow.log_metrics({"rows_in": rows, "rows_rejected": rejected})
    except MlflowException as exc:  # the record only saves score a read: the check itself passed
        print(f"check-batch: the check is not recorded for score ({str(exc).splitlines()[0]}); "
              "score will read the batch for its rejects and again for its predictions")


def find(settings: Settings, experiment_id: str, identity: InputIdentity, contract) -> CheckRecord | None:
    """The newest finished check of this job run, if it checked this very input under this
    contract; else None (see the module's docstring)."""
    if not _keyed(settings) or identity.fingerprint is None:
        return None
    import mlflow

    runs = mlflow.MlflowClient(tracking_uri=settings.tracking_uri).search_runs(
        [experiment_id],
        filter_string=(f"tags.{rt.JOB_RUN_ID} = '{settings.job_run_id}' and tags.{rt.RUN_STEP} = "
                       f"'{rt.STEP_CHECK_BATCH}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    tags, metrics = runs[0].data.tags, runs[0].data.metrics
    if (tags.get(rt.CHECKED_INPUT) != identity.fingerprint or tags.get(rt.CHECKED_CONTRACT) != contract_digest(contract)
            or "rows_in" not in metrics or "rows_rejected" not in metrics):
        return None
    return CheckRecord(identity.fingerprint, tags[rt.CHECKED_CONTRACT], int(metrics["rows_in"]),
                       int(metrics["rows_rejected"]))
