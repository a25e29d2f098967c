"""The commands and flags of the ``spark-mlops`` console script: argparse only, no behaviour.

Kept apart from :mod:`spark_mlops.cli` (which runs the commands) so that the bundle validator
can check a task's ``named_parameters`` against the real flags without importing the handlers.
Every subcommand records its name in ``args.command``; :mod:`spark_mlops.cli` maps names to
handlers.
"""

from __future__ import annotations

import argparse

from spark_mlops import defaults as D
from spark_mlops import devkit
from spark_mlops.constants import CHALLENGER_ALIAS, CHAMPION_ALIAS
from spark_mlops.registry_tags import APPROVAL_CHECK, APPROVED

VERBOSE_ENV = "SPARK_MLOPS_VERBOSE"


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, found {text!r}")


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where things live (flags override environment variables)")
    g.add_argument("--state-dir", help="local state folder [$SPARK_MLOPS_STATE_DIR, default .mlops]")
    g.add_argument("--tracking-uri", help="MLflow tracking URI [$MLFLOW_TRACKING_URI]")
    g.add_argument("--registry-uri", help="MLflow registry URI [$MLFLOW_REGISTRY_URI]")
    g.add_argument("--experiment", help="MLflow experiment name or workspace path")
    g.add_argument("--model-name", help="registered model name (three-part on Unity Catalog)")
    g.add_argument("--catalog", help="catalog for unqualified table names")
    g.add_argument("--schema", help="schema for unqualified table names")
    g.add_argument("--contract", help="data contract, an ODCS file (default: the packaged example contract) "
                   "[$SPARK_MLOPS_CONTRACT]")
    g.add_argument("-t", "--target", help="bundle target: recorded as a tag; locally, without --model-name, "
                   "also the target's model, catalog and schema from databricks.yml")
    g.add_argument("--job-run-id", help="Databricks job run id, recorded as a tag")
    g.add_argument("--git-commit", help="git commit, recorded as a tag")
    g.add_argument("--dfs-tmpdir", help="UC volume path for mlflow.spark temp files [$MLFLOW_DFS_TMP]")


def _add_gate_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the release gate (bundle variables fix the minimums; job parameters only tighten)")
    g.add_argument("--min-thresholds", default=D.as_key_values(D.MIN_THRESHOLDS),
                   help="minimum metric values, fixed per target (a bundle variable)")
    g.add_argument("--thresholds", default="",
                   help="stricter minimums for this run (a job parameter); cannot lower --min-thresholds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-mlops",
        allow_abbrev=False,
        description="The lifecycle of a Spark ML model: prepare, train, validate, promote, score.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help=f"show Spark and MLflow log lines [${VERBOSE_ENV}=1]")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *, settings: bool = True) -> argparse.ArgumentParser:
        # No abbreviations: a job parameter pushed down as --model must not be read as --model-name.
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if settings:
            _add_settings_flags(p)
        return p

    p = command("prepare", "check raw data against the contract; write clean + quarantine tables")
    p.add_argument("--input", required=True, help="CSV or parquet path, or a table name")
    p.add_argument("--clean-table", default=D.CLEAN_TABLE, help="clean rows with their train/holdout split")
    p.add_argument("--quarantine-table", default=D.QUARANTINE_TABLE, help="rejected rows with a reason column")
    p.add_argument("--holdout-fraction", type=float, default=D.HOLDOUT_FRACTION)
    p.add_argument("--split-seed", type=int, default=D.SPLIT_SEED)
    p.add_argument("--min-rows", type=int, default=D.MIN_CLEAN_ROWS, help="fail when fewer clean rows remain")

    p = command("train", f"fit the pipeline, log it to MLflow, register it as @{CHALLENGER_ALIAS}")
    p.add_argument("--clean-table", default=D.CLEAN_TABLE)
    p.add_argument("--classifier", default=D.CLASSIFIER, help="random_forest | gbt | logistic_regression")
    p.add_argument("--params", default="", help="hyperparameters, e.g. 'numTrees=50,maxDepth=5'")
    p.add_argument("--cv-folds", type=int, default=0, help="> 1 runs a CrossValidator search over --grid")
    p.add_argument("--grid", default="", help="search grid, e.g. 'maxDepth=3|5,numTrees=20|50'")
    p.add_argument("--seed", type=int, default=D.TRAINING_SEED)

    p = command("validate", f"test @{CHALLENGER_ALIAS} on the holdout against thresholds and @{CHAMPION_ALIAS}; "
                "exit 6 when it is rejected")
    p.add_argument("--clean-table", default=D.CLEAN_TABLE)
    _add_gate_flags(p)
    p.add_argument("--primary-metric", default=D.PRIMARY_METRIC)
    p.add_argument("--max-tolerance", type=float, default=D.MAX_TOLERANCE,
                   help=f"how much worse than @{CHAMPION_ALIAS} a candidate may be, at most (a bundle variable)")
    p.add_argument("--tolerance", default="",
                   help="a smaller tolerance for this run (a job parameter); cannot exceed --max-tolerance")
    p.add_argument("--report-only", type=parse_bool, nargs="?", const=True, default=False,
                   help="record the verdict but exit 0 when rejected (never in a job: the gate needs the exit code)")
    p.add_argument("--version", help=f"model version to validate (default: @{CHALLENGER_ALIAS})")

    p = command("promote", f"move @{CHAMPION_ALIAS} to a version its validation run passed (under the alias lock)")
    p.add_argument("--version", help=f"model version to promote (default: @{CHALLENGER_ALIAS}; in a job, "
                   "the version validated in the same job run)")
    p.add_argument("--reason", default="", help="recorded in the audit tags")
    p.add_argument("--min-thresholds", default=D.as_key_values(D.MIN_THRESHOLDS),
                   help="the verdict's metrics must meet these minimums again (a bundle variable)")
    p.add_argument("--stages", type=parse_bool, nargs="?", const=True, default=False,
                   help="also mirror legacy workspace-registry stages (not on Unity Catalog)")
    p.add_argument("--require-approval", type=parse_bool, nargs="?", const=True, default=False,
                   help=f"refuse unless the version carries {APPROVAL_CHECK}={APPROVED} (the deployment job's "
                        "deployment task)")

    p = command("approval-check", f"the deployment job's approval task: pass when the version carries "
                f"{APPROVAL_CHECK}={APPROVED}; exit 5 while it waits for a person")
    p.add_argument("--version", default="", help="the version the deployment job run handles (job parameter "
                   "model_version)")
    p.add_argument("--job-model-name", default="", help="the model the run was started for (job parameter "
                   "model_name); must be this target's model")
    p.add_argument("--approval-required", type=parse_bool, default=D.APPROVAL_REQUIRED,
                   help="false: approve automatically (a bundle variable: false in dev, test and staging)")
    p.add_argument("--approval-tag", default=APPROVAL_CHECK,
                   help="the version tag to read: the approval task's key ({{task.name}})")

    p = command("record-rejection", "after a failed validate: record the rejection (exit 0), or report "
                "that validate crashed without a verdict (exit 1)")
    p.add_argument("--version", help=f"model version (default: @{CHALLENGER_ALIAS})")

    p = command("rollback", f"move @{CHAMPION_ALIAS} back to the previous (or a given earlier) champion")
    p.add_argument("--version", default="", help="the earlier champion to restore (default: the recorded previous one)")
    p.add_argument("--reason", default="", help="recorded in the audit tags (required in a job)")
    p.add_argument("--stages", type=parse_bool, nargs="?", const=True, default=False)

    p = command("status", "print versions, aliases, verdicts and lineage (read-only)")
    p.add_argument("--json", type=parse_bool, nargs="?", const=True, default=False, dest="as_json",
                   help="print the registry view as JSON")

    p = command("deploy-model", f"copy the source model's @{CHAMPION_ALIAS} into this model as "
                f"@{CHALLENGER_ALIAS} (deploy-the-model mode)")
    p.add_argument("--source-model-name", required=True,
                   help="the registered model to deploy from (e.g. the staging catalog's)")
    p.add_argument("--source-alias", default=CHAMPION_ALIAS, help="the alias to deploy from the source model")

    p = command("score", f"batch-score with @{CHAMPION_ALIAS}; lineage columns; idempotent per batch id")
    p.add_argument("--input", required=True, help="CSV or parquet path, or a table name")
    p.add_argument("--output-table", default=D.PREDICTIONS_TABLE)
    p.add_argument("--rejected-table", default=D.SCORING_REJECTED_TABLE)
    p.add_argument("--batch-id", help="rerunning a batch id replaces that batch (default or empty: "
                                      "<input name>-<digest of the input's path, sizes and modification times>)")

    p = command("monitor", "drift and data quality of a scored batch against the baseline of the version "
                "that scored it; writes the monitoring table, MLflow metrics, a drift chart and version tags")
    p.add_argument("--batch-id", default="", help="the scored batch to monitor (default: derived from --input "
                   "exactly as score derives it)")
    p.add_argument("--predictions-table", default=D.PREDICTIONS_TABLE)
    p.add_argument("--rejected-table", default=D.SCORING_REJECTED_TABLE, help="the batch's out-of-contract rows")
    p.add_argument("--monitoring-table", default=D.MONITORING_TABLE, help="one row per batch, version, metric, feature")
    p.add_argument("--input", default="",
                   help="the batch's input, joined on the row key when the predictions carry no feature columns")
    p.add_argument("--psi-threshold", type=float, default=D.PSI_THRESHOLD, help="PSI at or above this is drift (a bundle variable)")
    p.add_argument("--null-rate-increase", type=float, default=D.NULL_RATE_INCREASE,
                   help="a null-rate increase at or above this is a quality alert (a bundle variable)")
    p.add_argument("--min-rows", type=int, default=D.MIN_ROWS_FOR_VERDICT, help="fewer scored rows: no verdict (a bundle variable)")
    p.add_argument("--psi-noise-quantile", type=float, default=D.PSI_NOISE_QUANTILE,
                   help="a PSI is drift only above this quantile of the PSI sampling alone gives at the two "
                        "sample sizes (0: no noise allowance)")
    p.add_argument("--json", type=parse_bool, nargs="?", const=True, default=False, dest="as_json",
                   help="print the verdict as JSON")

    p = command("drift-check", "the drift gate: exit 7 when the batch's monitoring verdict is drift")
    p.add_argument("--batch-id", default="", help="default: derived from --input exactly as score derives it")
    p.add_argument("--input", default="", help="the batch's input (names the batch when --batch-id is empty)")
    p.add_argument("--monitoring-table", default=D.MONITORING_TABLE)

    p = command("check-batch", "check a scoring batch against the data contract; write no table "
                "(in a job run, its counts are recorded for that run's score)")
    p.add_argument("--input", required=True)
    p.add_argument("--max-rejected-fraction", type=float, default=D.MAX_REJECTED_FRACTION,
                   help="fail when more than this fraction of rows breaks the contract")
    p.add_argument("--max-null-fraction", type=float, default=D.MAX_NULL_FRACTION,
                   help="fail when a feature is missing in more than this fraction of rows")

    p = sub.add_parser("contract", help="data contracts (ODCS): draft one from data, check or convert one",
                       description="data contracts (Open Data Contract Standard v3, docs/contracts.md)",
                       allow_abbrev=False)
    contract = p.add_subparsers(dest="contract_command", required=True, metavar="COMMAND")
    p = contract.add_parser("draft", allow_abbrev=False, help="profile an input and write an ODCS contract draft",
                            description="profile an input (CSV, parquet or table) with Spark and write an ODCS "
                                        "contract draft with its types, nullability and observed ranges, to review")
    _add_settings_flags(p)
    p.add_argument("--input", required=True, help="CSV or parquet path, or a table name")
    p.add_argument("--label", required=True, help="the column to predict (two integer classes)")
    p.add_argument("--key", default="", help="the key column(s), comma-separated (default: none; rows get a row id)")
    p.add_argument("--name", default="", help="the contract's name (default: the input's file or table name)")
    p.add_argument("--output", default="", help="the file to write (default: print the draft)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p = contract.add_parser("check", allow_abbrev=False, help="read a contract as the lifecycle does; exit 2 if bad",
                            description="read a contract as the lifecycle does: one line, exit 0 or 2")
    p.add_argument("file", help="the ODCS contract file")
    p = contract.add_parser("convert", allow_abbrev=False, help="convert an old-format spark-mlops contract to ODCS",
                            description="convert a contract in the old spark-mlops format (label:, features:) to ODCS")
    p.add_argument("file", help="the old contract file")
    p.add_argument("--output", required=True, help="the ODCS file to write")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")

    kit = devkit.load()  # the development kit's commands: run, bundle, demo, ui, generate-data
    if kit is not None:
        kit.add_commands(sub, command)
    return parser


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The top-level subcommands by name (argparse keeps them in a private action type)."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def long_options(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """(all long options, required long options) of a subcommand."""
    options: set[str] = set()
    required: set[str] = set()
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        options.update(longs)
        if action.required and longs:
            required.add(longs[0])
    return options, required
