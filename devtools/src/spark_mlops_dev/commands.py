"""The development kit's subcommands of ``spark-mlops``: their flags and their thin handlers.

Registered into the console script's parser by :func:`spark_mlops_dev.hooks.add_commands`; each
sets ``handler`` so that :func:`spark_mlops.cli.main` runs it like a lifecycle command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from spark_mlops.constants import EXIT_OK
from spark_mlops.errors import ConfigError

CommandFactory = Callable[..., argparse.ArgumentParser]
IN_PROCESS_HELP = ("run every task in this process, one at a time, with one Spark session (for a debugger); by "
                   "default each task is a process of its own, attached to its job cluster's one JVM")


def add_commands(sub: argparse._SubParsersAction, command: CommandFactory) -> None:
    """``command(name, help, settings=True)`` is the lifecycle's own subparser factory (the
    settings flags included unless ``settings=False``)."""
    p = command("generate-data", "write deterministic synthetic data in the example schema", settings=False)
    p.add_argument("--output", required=True, help="file path (.csv or .parquet folder)")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=["csv", "parquet"], default=None, help="default: from --output")
    p.add_argument("--no-label", action="store_true", help="omit the label (a scoring batch)")
    p.add_argument("--shift", action="append", default=[], metavar="FEATURE=DELTA",
                   help="add DELTA to a feature (e.g. Glucose=+50): a drifted batch (repeatable)")
    p.add_argument("--null", action="append", default=[], metavar="FEATURE",
                   help="leave a feature empty in every row: a data-quality failure (repeatable)")
    p.set_defaults(handler=run_generate)

    p = command("ui", "the MLflow UI on the local tracking store and registry; Ctrl-C stops it")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (a loopback address unless --allow-remote)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host: the UI has no authentication (a warning is printed)")
    p.set_defaults(handler=run_ui)

    p = command("show", "print a table's rows (or its Delta history) by its name, as the jobs name it")
    p.add_argument("table", help="table name: unqualified names use the target's (or --catalog/--schema's) schema")
    p.add_argument("--limit", type=int, default=20, help="rows to print")
    p.add_argument("--version", type=int, default=None, help="the table as it was at this Delta version (time travel)")
    p.add_argument("--history", action="store_true", help="the table's Delta commits instead: which run wrote what")
    p.set_defaults(handler=run_show)

    p = command("demo", "the main job: the bundle's jobs run locally, staging to prod")
    p.add_argument("--runs", type=int, default=1, help="run the whole sequence this many times")
    p.add_argument("--in-process", action="store_true", help=IN_PROCESS_HELP)
    p.add_argument("--approve", action="store_true",
                   help="approve prod's new version when it waits for approval, as a person would, and go on "
                        "(without it the demo stops there and prints the command)")
    p.set_defaults(handler=run_demo)

    p = command("approve", "approve a model version as the workspace's Approve button does: its tag "
                "Approval_Check=Approved, then a repair of its deployment job run (exit 5 when its evaluation "
                "rejected it)")
    p.add_argument("--version", required=True, help="the version waiting for approval (spark-mlops status)")
    p.add_argument("--in-process", action="store_true", help=IN_PROCESS_HELP)
    p.set_defaults(handler=run_approve)

    bundle = sub.add_parser("bundle", help="offline checks of the Databricks Asset Bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    p = bsub.add_parser("validate", help="schema, typed and semantic checks of databricks.yml + resources/")
    p.add_argument("-t", "--target", dest="target_names", action="append",
                   help="target to check (repeatable; default: all)")
    p.add_argument("--root", default=".", help="bundle root folder")
    p.add_argument("--show", action="store_true", help="print the resolved view per target")
    bundle.set_defaults(handler=run_bundle)

    p = sub.add_parser("run", help="run one of the bundle's jobs locally, or repair a run (--repair)")
    p.add_argument("job", nargs="?", default="", help="job resource key, e.g. training (optional with --repair)")
    p.add_argument("-t", "--target", dest="bundle_target", default=None, help="bundle target (default: dev)")
    p.add_argument("--var", action="append", default=[], help="override a bundle variable: k=v")
    p.add_argument("--param", action="append", default=[], help="override a job parameter: k=v")
    p.add_argument("--root", default=".", help="bundle root folder")
    p.add_argument("--state-dir", help="local state folder [$SPARK_MLOPS_STATE_DIR, default .mlops]")
    p.add_argument("--in-process", action="store_true", help=IN_PROCESS_HELP)
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="tasks at once [$SPARK_MLOPS_MAX_PARALLEL_TASKS, default 2]")
    p.add_argument("--max-retry-wait", type=float, default=None, metavar="SECONDS",
                   help="wait at most this long between retries, whatever min_retry_interval_millis says "
                        "[$SPARK_MLOPS_MAX_RETRY_WAIT_S]")
    p.add_argument("--repair", metavar="RUN_ID", default=None,
                   help="repair that run: re-run its failed tasks (or --rerun's), keeping the others' results")
    p.add_argument("--rerun", action="append", default=[], metavar="TASK",
                   help="with --repair: re-run this task (repeatable) instead of every failed one")
    p.add_argument("--rerun-dependent", action="store_true",
                   help="with --repair: also re-run every task downstream of the re-run ones")
    p.set_defaults(handler=run_job)


def run_generate(args: argparse.Namespace) -> int:
    from spark_mlops_dev import synthetic

    synthetic.write(
        args.output, rows=args.rows, seed=args.seed, fmt=args.format, with_label=not args.no_label,
        shifts=synthetic.parse_shifts(args.shift), nulls=args.null,
    )
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from spark_mlops.cli import settings_from_args
    from spark_mlops_dev import show

    settings = settings_from_args(args)
    print(show.history(settings, args.table, args.limit) if args.history
          else show.rows(settings, args.table, args.limit, version=args.version))
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    from spark_mlops.cli import settings_from_args
    from spark_mlops_dev import demo

    return demo.run(settings_from_args(args), runs=args.runs, process_per_task=not args.in_process,
                    approve=args.approve)


def run_approve(args: argparse.Namespace) -> int:
    from spark_mlops.cli import settings_from_args
    from spark_mlops_dev import workspace
    from spark_mlops_dev.bundle import targets

    if not args.target:
        raise ConfigError("approve: name the target whose model version to approve (-t prod)")
    result = workspace.approve(settings_from_args(args), targets.load_local(args.target), args.version,
                               process_per_task=not args.in_process)
    return result.exit_code


def run_bundle(args: argparse.Namespace) -> int:
    from spark_mlops_dev.bundle import validate

    return validate.main(root=args.root, targets=args.target_names, show=args.show)


def run_job(args: argparse.Namespace) -> int:
    from spark_mlops_dev.bundle import runner

    started = datetime.now(UTC)
    variables = dict(_split_assignment(v, "--var") for v in args.var)
    code = runner.main(
        root=args.root,
        job=args.job,
        target=args.bundle_target,
        variables=variables,
        parameters=dict(_split_assignment(v, "--param") for v in args.param),
        state_dir=args.state_dir,
        process_per_task=not args.in_process,
        repair=args.repair,
        rerun_tasks=args.rerun,
        rerun_dependent=args.rerun_dependent,
        max_parallel=args.max_parallel,
        max_retry_wait_s=args.max_retry_wait,
    )
    _start_deployment_jobs(args, variables, started)
    return code


def _start_deployment_jobs(args: argparse.Namespace, variables: dict[str, str], started: datetime) -> None:
    """What the workspace does after a run: a new version of a model linked to a deployment job starts it."""
    from spark_mlops.config import build_settings
    from spark_mlops_dev import workspace
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    bundle = resolve_bundle(args.root, args.bundle_target, variables)
    workspace.after_run(build_settings(state_dir=args.state_dir), bundle, args.job, started,
                        process_per_task=not args.in_process)


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} {text!r}: expected key=value")
    return key, value


def run_ui(args: argparse.Namespace) -> int:
    from spark_mlops.cli import settings_from_args
    from spark_mlops_dev import ui

    return ui.serve(settings_from_args(args), host=args.host, port=args.port, allow_remote=args.allow_remote)
