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
import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from spark_mlops import config as cfg
from spark_mlops import devkit, logs, remote
from spark_mlops.commands import build_parser
from spark_mlops.constants import EXIT_OK, EXIT_UNEXPECTED
from spark_mlops.errors import MlopsError
from spark_mlops.progress import progress
from spark_mlops.timing import span

# Steps that can run long on big inputs: a progress line on a terminal (see progress.py).
PROGRESS_COMMANDS = {"prepare", "train", "validate", "score", "check-batch", "monitor", "drift-check",
                     "deploy-model", "demo", "run", "contract"}


def settings_from_args(args: argparse.Namespace) -> cfg.Settings:
    settings = _flag_settings(args)
    if args.target and not args.model_name and not cfg.on_databricks():
        # Locally, with the development kit, `-t prod` means the prod target's model, catalog and
        # schema from databricks.yml (on Databricks the bundle passes them as flags).
        kit = devkit.load()
        if kit is not None:
            settings = kit.settings_for_target(settings, args.target)
    return settings


def _flag_settings(args: argparse.Namespace) -> cfg.Settings:
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
    prepare.run(settings_from_args(args), conf)
    return EXIT_OK


def _run_train(args: argparse.Namespace) -> int:
    from spark_mlops import model, training

    conf = cfg.TrainConfig(
        clean_table=args.clean_table,
        classifier=args.classifier,
        params=model.parse_params(args.classifier, args.params),
        cv_folds=args.cv_folds,
        grid=model.parse_grid(args.classifier, args.grid),
        seed=args.seed,
    )
    training.run(settings_from_args(args), conf)
    return EXIT_OK


def _run_validate(args: argparse.Namespace) -> int:
    from spark_mlops import validation

    conf = cfg.ValidateConfig(
        clean_table=args.clean_table,
        thresholds=cfg.gate_thresholds(args.min_thresholds, args.thresholds),
        primary_metric=args.primary_metric,
        tolerance=cfg.gate_tolerance(args.max_tolerance, args.tolerance),
        report_only=args.report_only,
        version=cfg.parse_version(args.version),
    )
    validation.run(settings_from_args(args), conf)  # raises ValidationFailed (exit 6) unless report_only
    return EXIT_OK


def _run_promote(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    conf = cfg.PromoteConfig(version=cfg.parse_version(args.version), reason=args.reason, stages=args.stages,
                             min_thresholds=cfg.gate_thresholds(args.min_thresholds, ""))
    settings = settings_from_args(args)
    if args.require_approval:  # the deployment job's deployment task: no @champion change without the tag
        from spark_mlops import approval

        approval.require_approved(settings, conf.version)
    promotion.promote(settings, conf)
    return EXIT_OK


def _run_approval_check(args: argparse.Namespace) -> int:
    from spark_mlops import approval

    approval.check(settings_from_args(args), version=args.version, job_model_name=args.job_model_name,
                   required=args.approval_required, tag=args.approval_tag)
    return EXIT_OK


def _run_record_rejection(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    promotion.record_rejection(settings_from_args(args), version=cfg.parse_version(args.version))
    return EXIT_OK


def _run_rollback(args: argparse.Namespace) -> int:
    from spark_mlops import promotion

    promotion.rollback(settings_from_args(args), reason=args.reason, version=cfg.parse_version(args.version),
                       stages=args.stages)
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    from spark_mlops import registry

    settings = settings_from_args(args)
    print(registry.status_json(settings) if args.as_json else registry.status_table(settings))
    return EXIT_OK


def _run_deploy_model(args: argparse.Namespace) -> int:
    from spark_mlops import deployment

    deployment.deploy_model(settings_from_args(args), source_model_name=args.source_model_name, source_alias=args.source_alias)
    return EXIT_OK


def _run_score(args: argparse.Namespace) -> int:
    from spark_mlops import scoring

    conf = cfg.ScoreConfig(
        input=args.input,
        output_table=args.output_table,
        rejected_table=args.rejected_table,
        batch_id=args.batch_id,
    )
    scoring.run(settings_from_args(args), conf)
    return EXIT_OK


def _run_monitor(args: argparse.Namespace) -> int:
    from spark_mlops import monitoring

    conf = monitoring.MonitorConfig(
        batch_id=args.batch_id,
        predictions_table=args.predictions_table,
        rejected_table=args.rejected_table,
        monitoring_table=args.monitoring_table,
        input=args.input or None,
        thresholds=monitoring.Thresholds(args.psi_threshold, args.null_rate_increase, args.min_rows,
                                         args.psi_noise_quantile),
    )
    monitoring.print_verdicts(monitoring.run(settings_from_args(args), conf), args.as_json)
    return EXIT_OK  # drift is reported, not failed on: drift-check is the gate


def _run_drift_check(args: argparse.Namespace) -> int:
    from spark_mlops import monitoring

    monitoring.drift_check(settings_from_args(args), args.batch_id, args.monitoring_table, source=args.input or None)  # raises DriftDetected (7)
    return EXIT_OK


def _run_check_batch(args: argparse.Namespace) -> int:
    from spark_mlops import prepare

    prepare.check_batch(settings_from_args(args), args.input, max_rejected_fraction=args.max_rejected_fraction,
                        max_null_fraction=args.max_null_fraction)
    return EXIT_OK


def _run_contract(args: argparse.Namespace) -> int:
    from spark_mlops import contract_file

    if args.contract_command == "check":
        contract = contract_file.load_contract(args.file)
        keys = list(contract.key_columns) or f"none (row id {contract.row_id_column})"
        print(f"contract {args.file}: ok: label {contract.label} {list(contract.label_values)}, "
              f"{len(contract.features)} features, key {keys}, model {contract.model_name}")
    elif args.contract_command == "convert":
        contract_file.write_document(contract_file.convert_file(args.file), args.output, force=args.force)
        print(f"contract convert: wrote {args.output}")
    else:
        from spark_mlops import contract_draft

        document = contract_draft.draft(settings_from_args(args), args.input, args.label,
                                         tuple(k.strip() for k in args.key.split(",") if k.strip()), args.name or None)
        if args.output:
            contract_file.write_document(document, args.output, force=args.force)
            print(f"contract draft: wrote {args.output}: review it, then: spark-mlops prepare --contract "
                  f"{args.output} --input {args.input}")
        else:
            contract_file.parse_contract(contract_file.to_yaml(document), "the draft")
            print(contract_file.to_yaml(document), end="")
    return EXIT_OK


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "prepare": _run_prepare,
    "train": _run_train,
    "validate": _run_validate,
    "promote": _run_promote,
    "record-rejection": _run_record_rejection,
    "approval-check": _run_approval_check,
    "rollback": _run_rollback,
    "status": _run_status,
    "deploy-model": _run_deploy_model,
    "score": _run_score,
    "check-batch": _run_check_batch,
    "monitor": _run_monitor,
    "drift-check": _run_drift_check,
    "contract": _run_contract,
}


def main(argv: Sequence[str] | None = None, *, ignore_unknown: bool = False) -> int:
    """Run one command. ``ignore_unknown`` is for wheel tasks: Databricks pushes every job
    parameter down to every python_wheel_task as ``--name=value``, including the ones a given
    subcommand has no use for."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if ignore_unknown:
        args, unknown = parser.parse_known_args(argv)
    else:
        args, unknown = parser.parse_args(argv), []
    logs.set_verbose(args.verbose)
    logs.configure()  # before anything imports MLflow
    remote.bound_retries()  # MLflow reads them per request: an unreachable server fails in seconds
    if unknown:
        logs.note(f"spark-mlops {args.command}: ignoring job parameters it does not use: {unknown}")
    try:
        with span(f"step.{args.command}"), progress(args.command) if args.command in PROGRESS_COMMANDS else nullcontext():
            handler = getattr(args, "handler", None) or HANDLERS[args.command]  # the kit's commands set one
            return int(handler(args))
    except Exception as exc:  # noqa: BLE001 - the top level: one redacted line, whatever was raised
        return _report(args.command, exc, traceback_too=logs.verbose() or ignore_unknown)


def _report(command: str, exc: Exception, *, traceback_too: bool) -> int:
    """Print one redacted line for ``exc`` (and, when asked, its traceback, redacted) and return
    the exit code. A task on Databricks always gets the traceback: its log is all there is."""
    failure = remote.unreachable(exc)
    if failure is not None:
        exc = failure
    if isinstance(exc, MlopsError):
        print(f"spark-mlops {command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    if traceback_too:
        print(cfg.redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
    hint = "" if traceback_too else " (run with -v for the traceback)"
    print(f"spark-mlops {command}: unexpected error: {_one_line(f'{type(exc).__name__}: {exc}')}{hint}",
          file=sys.stderr)
    return EXIT_UNEXPECTED


def _one_line(text: str) -> str:
    return cfg.redact(" ".join(text.split()))


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
record_rejection_task = _task("record-rejection")
approval_check_task = _task("approval-check")
rollback_task = _task("rollback")
status_task = _task("status")
deploy_model_task = _task("deploy-model")
score_task = _task("score")
check_batch_task = _task("check-batch")
monitor_task = _task("monitor")
drift_check_task = _task("drift-check")
