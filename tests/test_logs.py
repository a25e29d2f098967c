"""Quiet by default: no Spark WARN, no MLflow/alembic INFO lines; -v / SPARK_MLOPS_VERBOSE shows them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from spark_mlops import commands, logs
from spark_mlops.spark import forward_jvm_stderr, log4j2_properties
from tests.conftest import FIXTURES, REPO_ROOT

# A log line from log4j (ours: "14:00:40 WARN BlockManager: ...") or Python logging
# (MLflow's and ours: "2026/11/27 14:00:01 INFO alembic.runtime.migration: ...").
LOG_LINE = re.compile(r"^(\d{4}/\d\d/\d\d )?\d\d:\d\d:\d\d(,\d+)? (WARN|WARNING|INFO)\b", re.MULTILINE)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_MLOPS_", "MLFLOW_"))}
    return {**env, "PYTHONPATH": str(REPO_ROOT / "src"), **extra}


def test_the_jvm_logs_errors_only_unless_verbose():
    quiet, verbose = log4j2_properties(False), log4j2_properties(True)
    assert "rootLogger.level = error" in quiet and "rootLogger.level = warn" in verbose


def test_the_flag_and_the_environment_variable_name_the_same_switch(monkeypatch):
    assert logs.ENV_VAR == commands.VERBOSE_ENV
    monkeypatch.delenv(logs.ENV_VAR, raising=False)
    assert not logs.verbose()
    logs.set_verbose(True)
    assert logs.verbose() and os.environ[logs.ENV_VAR] == "1"


def test_the_jvm_stderr_filter_drops_only_the_incubator_warning(capfd):
    read, write = os.pipe()
    lines = [b"WARNING: Using incubator modules: jdk.incubator.vector\n",
             b"12:00:01 ERROR SparkContext: something real\n", b"Exception in thread main\n"]
    with os.fdopen(write, "wb") as jvm_stderr:
        jvm_stderr.writelines(lines)
    with os.fdopen(read, "rb") as stream:
        forward_jvm_stderr(stream)
    assert capfd.readouterr().err == (lines[1] + lines[2]).decode()


@pytest.mark.slow
def test_a_job_run_prints_no_log_lines_by_default_and_mlflow_info_at_verbose(tmp_path):
    """prepare + train through the local runner: a cached CSV read (Spark WARNs), a new sqlite store
    (alembic INFO), a model logged and registered, and job parameters a task ignores."""
    state = tmp_path / "state"
    training_input = state / "volumes" / "dev" / "spark_mlops" / "raw" / "training" / "diabetes.csv"
    training_input.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "diabetes_train.csv", training_input)
    run = subprocess.run(
        [sys.executable, "-m", "spark_mlops", "run", "training", "--state-dir", str(state),
         "--root", str(REPO_ROOT), "--param", "params=numTrees=5,maxDepth=3"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not LOG_LINE.findall(run.stderr), run.stderr
    assert "ignoring job parameters" not in run.stderr
    assert "Setting default log level" not in run.stderr
    assert "incubator" not in run.stderr  # the JVM's start-up warning is filtered out
    assert "Created version" not in run.stderr  # MLflow's own print when registering, held back
    assert "prepare:" in run.stdout + run.stderr

    # The same store, opened at -v and through the environment variable: MLflow's INFO lines show.
    fresh = tmp_path / "fresh"
    for argv, extra in ((["-v", "status"], {}), (["status"], {logs.ENV_VAR: "1"})):
        shutil.rmtree(fresh, ignore_errors=True)
        shown = subprocess.run([sys.executable, "-m", "spark_mlops", *argv, "--state-dir", str(fresh)],
                               capture_output=True, text=True, env=_env(**extra), cwd=tmp_path, timeout=300)
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "INFO alembic.runtime.migration" in shown.stderr, (argv, shown.stderr[-2000:])
