"""The ``spark-mlops`` console script.

Thin by design: parse flags into typed configs, call the library, map errors to exit codes.
Each lifecycle subcommand is also a Databricks ``python_wheel_task`` entry point
(``[project.entry-points."spark_mlops.tasks"]``), which passes ``named_parameters`` as
``--key=value``. Heavy imports (pyspark, mlflow) happen inside the handlers so that
``--help`` and the bundle commands stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from spark_mlops import config as cfg
from spark_mlops.errors import ConfigError, MlopsError
from spark_mlops.timing import span

EXIT_OK = 0


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where things live (flags override environment variables)")
    g.add_argument("--state-dir", help="local state folder [$SPARK_MLOPS_STATE_DIR, default .mlops]")
    g.add_argument("--tracking-uri", help="MLflow tracking URI [$MLFLOW_TRACKING_URI]")
    g.add_argument("--registry-uri", help="MLflow registry URI [$MLFLOW_REGISTRY_URI]")
    g.add_argument("--experiment", help="MLflow experiment name or workspace path")
    g.add_argument("--model-name", help="registered model name (three-part on Unity Catalog)")
    g.add_argument("--catalog", help="catalog for unqualified table names")
    g.add_argument("--schema", help="schema for unqualified table names")
    g.add_argument("--contract", help="data contract YAML (default: the packaged example contract)")
    g.add_argument("--target", help="bundle target, recorded as a tag")
    g.add_argument("--job-run-id", help="Databricks job run id, recorded as a tag")
    g.add_argument("--git-commit", help="git commit, recorded as a tag")
    g.add_argument("--dfs-tmpdir", help="UC volume path for mlflow.spark temp files [$MLFLOW_DFS_TMP]")


def _settings(args: argparse.Namespace) -> cfg.Settings:
    return cfg.build_settings(
        state_dir=args.state_dir,
        tracking_uri=args.tracking_uri,
        registry_uri=args.registry_uri,
        experiment=args.experiment,
        model_name=args.model_name,
        catalog=args.catalog,
        schema=args.schema,
        contract=args.contract,
        target=args.target,
        job_run_id=args.job_run_id,
        git_commit=args.git_commit,
        dfs_tmpdir=args.dfs_tmpdir,
    )


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, found {text!r}")


# ---------------------------------------------------------------- handlers


def _run_prepare(args: argparse.Namespace) -> int:
    from spark_mlops import prepare

    conf = cfg.PrepareConfig(
        input=args.input,
        clean_table=args.clean_table,
        quarantine_table=args.quarantine_table,
        holdout_fraction=args.holdout_fraction,
        split_seed=args.split_seed,
        min_rows=args.min_rows,
    )
    prepare.run(_settings(args), conf)
    return EXIT_OK


def _parse_grid(text: str | None) -> dict[str, list[float | int]]:
    grid: dict[str, list[float | int]] = {}
    for key, values in cfg.parse_key_values(text, "--grid").items():
        grid[key] = [cfg.parse_number(v, f"--grid {key}") for v in values.split("|") if v]
    return grid


def _run_train(args: argparse.Namespace) -> int:
    from spark_mlops import training

    params = {
        k: cfg.parse_number(v, f"--params {k}") if v.replace(".", "", 1).lstrip("-").isdigit() else v
        for k, v in cfg.parse_key_values(args.params, "--params").items()
    }
    conf = cfg.TrainConfig(
        clean_table=args.clean_table,
        classifier=args.classifier,
        params=params,
        cv_folds=args.cv_folds,
        grid=_parse_grid(args.grid),
        seed=args.seed,
    )
    training.run(_settings(args), conf)
    return EXIT_OK


def _run_validate(args: argparse.Namespace) -> int:
    from spark_mlops import validation

    thresholds = {
        k: float(cfg.parse_number(v, f"--thresholds {k}"))
        for k, v in cfg.parse_key_values(args.thresholds, "--thresholds").items()
    }
    conf = cfg.ValidateConfig(
        clean_table=args.clean_table,
        thresholds=thresholds,
        primary_metric=args.primary_metric,
        tolerance=args.tolerance,
        report_only=args.report_only,
        version=args.version,
    )
    report = validation.run(_settings(args), conf)
    return EXIT_OK if report.passed or conf.report_only else validation.EXIT_REJECTED


def _run_promote(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    conf = cfg.PromoteConfig(version=args.version, reason=args.reason, stages=args.stages)
    promotion.promote(_settings(args), conf)
    return EXIT_OK


def _run_reject(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    promotion.reject(_settings(args), version=args.version, reason=args.reason)
    return EXIT_OK  # not reached: reject() always raises so the job run fails


def _run_rollback(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    promotion.rollback(_settings(args), reason=args.reason, stages=args.stages)
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    from spark_mlops import registry

    print(registry.status_table(_settings(args)))
    return EXIT_OK


def _run_score(args: argparse.Namespace) -> int:
    from spark_mlops import scoring

    conf = cfg.ScoreConfig(
        input=args.input,
        output_table=args.output_table,
        rejected_table=args.rejected_table,
        batch_id=args.batch_id,
    )
    scoring.run(_settings(args), conf)
    return EXIT_OK


def _run_check_batch(args: argparse.Namespace) -> int:
    from spark_mlops import prepare

    prepare.check_batch(_settings(args), args.input, max_rejected_fraction=args.max_rejected_fraction)
    return EXIT_OK


def _run_generate(args: argparse.Namespace) -> int:
    from spark_mlops import synthetic

    synthetic.write(
        args.output, rows=args.rows, seed=args.seed, fmt=args.format, with_label=not args.no_label
    )
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    from spark_mlops import demo

    return demo.run(_settings(args), runs=args.runs)


def _run_bundle_validate(args: argparse.Namespace) -> int:
    from spark_mlops.bundle import validate

    return validate.main(root=args.root, targets=args.target_names, show=args.show)


def _run_job(args: argparse.Namespace) -> int:
    from spark_mlops.bundle import runner

    return runner.main(
        root=args.root,
        job=args.job,
        target=args.bundle_target,
        variables=dict(_split_assignment(v, "--var") for v in args.var),
        parameters=dict(_split_assignment(v, "--param") for v in args.param),
        state_dir=args.state_dir,
    )


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} {text!r}: expected key=value")
    return key, value


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-mlops",
        allow_abbrev=False,
        description="The lifecycle of a Spark ML model: prepare, train, validate, promote, score.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int], *, settings=True):
        # No abbreviations: a job parameter pushed down as --model must not be read as --model-name.
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        p.set_defaults(handler=handler)
        if settings:
            _add_settings_flags(p)
        return p

    p = command("prepare", "check raw data against the contract; write clean + quarantine tables", _run_prepare)
    p.add_argument("--input", required=True, help="CSV or parquet path, or a table name")
    p.add_argument("--clean-table", default="clean", help="clean rows with their train/holdout split")
    p.add_argument("--quarantine-table", default="quarantine", help="rejected rows with a reason column")
    p.add_argument("--holdout-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--min-rows", type=int, default=100, help="fail when fewer clean rows remain")

    p = command("train", "fit the pipeline, log it to MLflow, register it as @challenger", _run_train)
    p.add_argument("--clean-table", default="clean")
    p.add_argument("--classifier", default="random_forest", help="random_forest | gbt | logistic_regression")
    p.add_argument("--params", default="", help="hyperparameters, e.g. 'numTrees=50,maxDepth=5'")
    p.add_argument("--cv-folds", type=int, default=0, help="> 1 runs a CrossValidator search over --grid")
    p.add_argument("--grid", default="", help="search grid, e.g. 'maxDepth=3|5,numTrees=20|50'")
    p.add_argument("--seed", type=int, default=42)

    p = command("validate", "test @challenger on the holdout against thresholds and @champion", _run_validate)
    p.add_argument("--clean-table", default="clean")
    p.add_argument("--thresholds", default="areaUnderROC=0.75,accuracy=0.7", help="minimum metric values")
    p.add_argument("--primary-metric", default="areaUnderROC")
    p.add_argument("--tolerance", type=float, default=0.01, help="how much worse than @champion is allowed")
    p.add_argument("--report-only", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--version", help="model version to validate (default: @challenger)")

    p = command("promote", "move @champion to a validated challenger (compare-and-set)", _run_promote)
    p.add_argument("--version", help="model version to promote (default: @challenger)")
    p.add_argument("--reason", default="", help="recorded in the audit tags")
    p.add_argument("--stages", type=_bool, nargs="?", const=True, default=False,
                   help="also mirror legacy workspace-registry stages (Staging/Production)")

    p = command("reject", "record that the challenger was rejected, and fail with the reason", _run_reject)
    p.add_argument("--version", help="model version (default: @challenger)")
    p.add_argument("--reason", default="", help="why it was rejected (the validation verdict)")

    p = command("rollback", "move @champion back to the previous champion", _run_rollback)
    p.add_argument("--reason", default="", help="recorded in the audit tags")
    p.add_argument("--stages", type=_bool, nargs="?", const=True, default=False)

    command("status", "print versions, aliases and validation tags", _run_status)

    p = command("score", "batch-score with @champion; lineage columns; idempotent per batch id", _run_score)
    p.add_argument("--input", required=True, help="CSV or parquet path, or a table name")
    p.add_argument("--output-table", default="predictions")
    p.add_argument("--rejected-table", default="scoring_rejected")
    p.add_argument("--batch-id", help="rerunning a batch id replaces that batch (default: from --input)")

    p = command("check-batch", "check a scoring batch against the data contract; write nothing", _run_check_batch)
    p.add_argument("--input", required=True)
    p.add_argument("--max-rejected-fraction", type=float, default=0.5,
                   help="fail when more than this fraction of rows breaks the contract")

    p = command("generate-data", "write deterministic synthetic data in the example schema", _run_generate,
                settings=False)
    p.add_argument("--output", required=True, help="file path (.csv or .parquet folder)")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=["csv", "parquet"], default=None, help="default: from --output")
    p.add_argument("--no-label", action="store_true", help="omit the label (a scoring batch)")

    p = command("demo", "run the bundle's jobs locally: training -> release -> batch inference", _run_demo)
    p.add_argument("--runs", type=int, default=1, help="run the whole sequence this many times")

    bundle = sub.add_parser("bundle", help="offline checks of the Databricks Asset Bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    p = bsub.add_parser("validate", help="schema, typed and semantic checks of databricks.yml + resources/")
    p.set_defaults(handler=_run_bundle_validate)
    p.add_argument("-t", "--target", dest="target_names", action="append",
                   help="target to check (repeatable; default: all)")
    p.add_argument("--root", default=".", help="bundle root folder")
    p.add_argument("--show", action="store_true", help="print the resolved view per target")

    p = sub.add_parser("run", help="run one of the bundle's jobs locally")
    p.set_defaults(handler=_run_job)
    p.add_argument("job", help="job resource key, e.g. training")
    p.add_argument("-t", "--target", dest="bundle_target", default=None, help="bundle target (default: dev)")
    p.add_argument("--var", action="append", default=[], help="override a bundle variable: k=v")
    p.add_argument("--param", action="append", default=[], help="override a job parameter: k=v")
    p.add_argument("--root", default=".", help="bundle root folder")
    p.add_argument("--state-dir", help="local state folder [$SPARK_MLOPS_STATE_DIR, default .mlops]")
    return parser


def main(argv: Sequence[str] | None = None, *, ignore_unknown: bool = False) -> int:
    """Run one command. ``ignore_unknown`` is for wheel tasks: Databricks pushes every job
    parameter down to every python_wheel_task as ``--name=value``, including the ones a given
    subcommand has no use for."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if ignore_unknown:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            print(f"spark-mlops {args.command}: ignoring job parameters it does not use: {unknown}",
                  file=sys.stderr)
    else:
        args = parser.parse_args(argv)
    try:
        with span(f"step.{args.command}"):
            return int(args.handler(args))
    except MlopsError as exc:
        print(f"spark-mlops {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _task(command: str) -> Callable[[], None]:
    """A python_wheel_task entry point: ``sys.argv[1:]`` holds the task's ``--key=value`` pairs."""

    def entry() -> None:
        sys.exit(main([command, *sys.argv[1:]], ignore_unknown=True))

    entry.__name__ = f"{command.replace('-', '_')}_task"
    return entry


prepare_task = _task("prepare")
train_task = _task("train")
validate_task = _task("validate")
promote_task = _task("promote")
score_task = _task("score")
check_batch_task = _task("check-batch")
reject_task = _task("reject")
