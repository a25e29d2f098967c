"""prepare and check-batch: clean/quarantine tables, deterministic split, and bad input."""

from __future__ import annotations

import pytest

from spark_mlops import prepare
from spark_mlops.config import PrepareConfig
from spark_mlops.errors import DataContractError
from spark_mlops.tables import tables_for
from tests.conftest import FIXTURES, run_cli


def read(spark, settings, name):
    return tables_for(spark, settings).read(settings.table_name(name))


def test_clean_and_quarantine_with_reasons(spark, settings):
    result = prepare.run(settings, PrepareConfig(input=str(FIXTURES / "diabetes_with_bad_rows.csv")))
    assert (result.rows_in, result.rows_clean, result.rows_quarantined) == (300, 290, 10)
    quarantine = read(spark, settings, "quarantine")
    reasons = [r["rejection_reason"] for r in quarantine.collect()]
    assert sum("Glucose=999.0 > 400" in r for r in reasons) == 5
    assert sum("Outcome=2 not in [0, 1]" in r for r in reasons) == 3
    assert sum(r == "Age is missing" for r in reasons) == 2
    assert {"source", "rejected_at"} <= set(quarantine.columns)
    clean = read(spark, settings, "clean")
    assert clean.count() == 290
    # zero-as-missing: no measured Insulin of 0 survives in the clean table
    assert clean.where("Insulin = 0").count() == 0 and clean.where("Insulin IS NULL").count() > 0


def test_split_is_the_same_on_every_rerun(spark, settings):
    conf = PrepareConfig(input=str(FIXTURES / "diabetes_train.csv"))
    prepare.run(settings, conf)
    first = {r["patient_id"]: r["split"] for r in read(spark, settings, "clean").collect()}
    prepare.run(settings, conf)
    second = {r["patient_id"]: r["split"] for r in read(spark, settings, "clean").collect()}
    assert first == second
    assert 0.15 < sum(v == "holdout" for v in first.values()) / len(first) < 0.25


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("bad/missing_column.csv", "missing required column(s) ['Glucose']"),
        ("bad/wrong_type.csv", "column BMI: 3 of 200 value(s) are not double (e.g. ['high', 'n/a', 'thirty'])"),
        ("bad/empty.csv", "the file is empty"),
        ("bad/single_class.csv", "single class among clean rows (expected [0, 1], found {0: 200, 1: 0})"),
        ("bad/corrupt_lines.csv", "2 of 200 CSV line(s) are malformed"),
        ("no/such/file.csv", "no such file or folder"),
    ],
)
def test_bad_input_is_a_clear_error_and_nothing_is_written(fixture, expected, settings, capsys):
    path = str(FIXTURES / fixture)
    code = run_cli("prepare", "--state-dir", str(settings.state_dir), "--input", path)
    err = capsys.readouterr().err
    assert code == DataContractError.exit_code
    assert expected in err and path in err
    assert not (settings.state_dir / "warehouse").exists()


def test_bad_input_leaves_the_previous_tables_intact(spark, settings, capsys):
    prepare.run(settings, PrepareConfig(input=str(FIXTURES / "diabetes_train.csv")))
    before = sorted(r["patient_id"] for r in read(spark, settings, "clean").collect())
    code = run_cli("prepare", "--state-dir", str(settings.state_dir), "--input", str(FIXTURES / "bad/wrong_type.csv"))
    assert code == DataContractError.exit_code
    assert sorted(r["patient_id"] for r in read(spark, settings, "clean").collect()) == before


def test_too_few_clean_rows(settings, capsys):
    code = run_cli("prepare", "--state-dir", str(settings.state_dir), "--min-rows", "5000",
                   "--input", str(FIXTURES / "diabetes_train.csv"))
    assert code == DataContractError.exit_code
    assert "only 1000 clean row(s) of 1000 (expected at least 5000" in capsys.readouterr().err


def test_check_batch_accepts_a_good_batch_and_names_a_missing_feature(settings, capsys):
    assert prepare.check_batch(settings, str(FIXTURES / "scoring_batch.csv")) == (200, 0)
    code = run_cli("check-batch", "--state-dir", str(settings.state_dir),
                   "--input", str(FIXTURES / "bad/scoring_missing_feature.csv"))
    assert code == DataContractError.exit_code
    assert "missing required column(s) ['Insulin']" in capsys.readouterr().err


def test_parquet_input_and_volume_paths_map_to_the_state_folder(spark, settings):
    from spark_mlops.synthetic import write
    from spark_mlops.tables import local_path

    volume = "/Volumes/main/ml/raw/train_parquet"
    write(local_path(settings, volume), rows=400, seed=3, fmt="parquet")
    result = prepare.run(settings, PrepareConfig(input=volume))
    assert result.rows_in == 400
