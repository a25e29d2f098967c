"""``spark-mlops show``: a table found by name, its rows now or at an earlier version, its commits."""

from __future__ import annotations

from spark_mlops.errors import ConfigError
from tests.conftest import FIXTURES, run_cli


def test_show_prints_rows_an_earlier_version_and_the_history(settings, capsys):
    common = ("--state-dir", str(settings.state_dir))
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_train.csv")) == 0
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_with_bad_rows.csv")) == 0
    capsys.readouterr()

    assert run_cli("show", *common, "clean", "--limit", "2") == 0
    now = capsys.readouterr().out.splitlines()
    assert now[0].startswith("mlops.clean: ") and now[0].endswith(" rows")
    assert now[1].split()[0] == "patient_id" and len(now) == 5  # header line, column names, rule, 2 rows

    assert run_cli("show", *common, "clean", "--version", "0", "--limit", "1") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "mlops.clean at version 0: 1000 rows"  # the first prepare's table, by time travel

    assert run_cli("show", *common, "clean", "--history") == 0
    history = capsys.readouterr().out.splitlines()
    assert history[0] == "mlops.clean: the last 2 commit(s)"
    assert [line.split()[0] for line in history[3:]] == ["1", "0"]  # newest first
    assert all("numOutputRows=" in line for line in history[3:])


def test_show_names_a_missing_table_and_how_to_find_the_main_jobs(settings, capsys):
    code = run_cli("show", "--state-dir", str(settings.state_dir), "predictions")
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code
    assert "table mlops.predictions does not exist" in err and "-t staging or -t prod" in err
