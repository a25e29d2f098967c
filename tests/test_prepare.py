"""prepare and check-batch: clean/quarantine tables, deterministic split, and bad input."""

from __future__ import annotations

import pytest

from spark_mlops import prepare
from spark_mlops.config import PrepareConfig
from spark_mlops.errors import DataContractError
from spark_mlops.tables import tables_for
from tests.conftest import FIXTURES, assert_nothing_written, run_cli


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
        ("bad/semicolon.csv", "the file looks semicolon-separated; save it comma-separated"),
        ("bad/label_yes_no.csv", "column Outcome: 200 of 200 value(s) are not integers (the label must be one of [0, 1])"),
        ("bad/duplicate_keys.csv", "1 row(s) repeat a key ['patient_id'] of an earlier row (e.g. [('p7-000000004',)])"),
        ("bad/no_data_files", "the folder has no data files (.csv or .parquet); found ['notes.txt']"),
        ("bad/scoring_batch_as_training.csv", "missing required column(s) ['Outcome']"),
    ],
)
def test_bad_input_is_a_clear_error_and_nothing_is_written(fixture, expected, settings, capsys):
    path = str(FIXTURES / fixture).replace("bad/scoring_batch_as_training.csv", "scoring_batch.csv")
    code = run_cli("prepare", "--state-dir", str(settings.state_dir), "--input", path)
    err = capsys.readouterr().err
    assert code == DataContractError.exit_code
    assert expected in err and path in err
    assert err.count("\n") == 1  # one line, no traceback
    assert_nothing_written(settings.state_dir)


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
    assert_nothing_written(settings.state_dir)


def test_check_batch_accepts_a_good_batch_and_names_a_missing_feature(settings, capsys):
    assert prepare.check_batch(settings, str(FIXTURES / "scoring_batch.csv")) == (200, 0)
    code = run_cli("check-batch", "--state-dir", str(settings.state_dir),
                   "--input", str(FIXTURES / "bad/scoring_missing_feature.csv"))
    assert code == DataContractError.exit_code
    assert "missing required column(s) ['Insulin']" in capsys.readouterr().err
    assert_nothing_written(settings.state_dir)


def test_parquet_input_and_volume_paths_map_to_the_state_folder(spark, settings):
    from spark_mlops.tables import local_path
    from spark_mlops_dev.synthetic import write

    volume = "/Volumes/main/ml/raw/train_parquet"
    write(local_path(settings, volume), rows=400, seed=3, fmt="parquet")
    result = prepare.run(settings, PrepareConfig(input=volume))
    assert result.rows_in == 400


@pytest.mark.parametrize("fixture", ["bad/bom_crlf.csv", "bad/reordered_headers", "bad/numeric_strings.csv"])
def test_odd_but_valid_csv_is_read_by_header_name(spark, settings, fixture):
    """A byte order mark with CRLF line ends, files whose columns come in another order (Glucose
    and BMI swapped in part-2.csv), and numbers written as 1e-3, +2 or 3.2E1 are all accepted."""
    result = prepare.run(settings, PrepareConfig(input=str(FIXTURES / fixture)))
    assert (result.rows_in, result.rows_quarantined) == (200, 0)
    clean = read(spark, settings, "clean")
    assert clean.columns[0] == "patient_id"  # no BOM glued to the first name
    # Read by position, the swapped file would put BMI (10-80) into Glucose and quarantine rows.
    assert clean.where("Glucose < 30 OR BMI > 80").count() == 0
    assert clean.where("Age IS NULL OR Outcome IS NULL").count() == 0  # the CR did not stick to Outcome
    if fixture == "bad/numeric_strings.csv":
        values = {r["patient_id"]: r for r in clean.collect()}
        assert values["p7-000000000"]["DiabetesPedigreeFunction"] == 0.001
        assert values["p7-000000010"]["Pregnancies"] == 2.0
        assert values["p7-000000020"]["BMI"] == 32.0


def test_check_batch_refuses_a_mostly_missing_feature_unless_allowed(settings, capsys):
    path = str(FIXTURES / "bad/all_null_feature.csv")
    code = run_cli("check-batch", "--state-dir", str(settings.state_dir), "--input", path)
    err = capsys.readouterr().err
    assert code == DataContractError.exit_code
    assert "feature(s) missing in more than 90% of rows: Insulin 200 of 200 (100%)" in err
    assert run_cli("check-batch", "--state-dir", str(settings.state_dir), "--input", path,
                   "--max-null-fraction", "1.0") == 0
    assert_nothing_written(settings.state_dir)


def test_check_batch_refuses_duplicate_keys(settings, capsys):
    code = run_cli("check-batch", "--state-dir", str(settings.state_dir),
                   "--input", str(FIXTURES / "bad/duplicate_keys.csv"))
    assert code == DataContractError.exit_code
    assert "repeat a key ['patient_id']" in capsys.readouterr().err
    assert_nothing_written(settings.state_dir)


def test_keyless_input_gets_row_ids_stable_across_files_and_reruns(spark, settings, tmp_path):
    """The published 9-column layout: no key. Row ids depend on the row's values, not on where
    the row sits, so a reordered copy of the file gives every row the same id and split."""
    import pandas as pd

    source = FIXTURES / "keyless/diabetes_train.csv"
    result = prepare.run(settings, PrepareConfig(input=str(source)))
    assert result.rows_clean == 1000
    clean = read(spark, settings, "clean")
    assert "patient_id" not in clean.columns and clean.columns[0] == "row_id"
    features = [c for c in clean.columns if c not in ("row_id", "Outcome", "split")]

    def by_values(df):
        return {tuple(r[c] for c in features) + (r["Outcome"],): (r["row_id"], r["split"]) for r in df.collect()}

    first = by_values(clean)
    assert len({row_id for row_id, _ in first.values()}) == 1000
    reordered = tmp_path / "elsewhere" / "copy.csv"
    reordered.parent.mkdir()
    pd.read_csv(source).iloc[::-1].to_csv(reordered, index=False)
    prepare.run(settings, PrepareConfig(input=str(reordered)))
    assert by_values(read(spark, settings, "clean")) == first


def test_parquet_files_that_disagree_on_a_column_type_are_refused(settings, tmp_path, capsys):
    import pandas as pd

    frame = pd.read_csv(FIXTURES / "diabetes_train.csv")
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.head(500).to_parquet(folder / "part-1.parquet")
    frame.tail(500).astype({"BMI": str}).to_parquet(folder / "part-2.parquet")
    code = run_cli("prepare", "--state-dir", str(settings.state_dir), "--input", str(folder))
    assert code == DataContractError.exit_code
    assert "parquet files disagree on column(s) ['BMI'] (part-1.parquet vs part-2.parquet)" in capsys.readouterr().err
    assert_nothing_written(settings.state_dir)


def test_csv_files_with_different_columns_are_refused_by_name(settings, tmp_path, capsys):
    folder = tmp_path / "parts"
    folder.mkdir()
    lines = (FIXTURES / "scoring_batch.csv").read_text().splitlines()
    (folder / "a.csv").write_text("\n".join(lines[:50]) + "\n")
    (folder / "b.csv").write_text("\n".join(line.replace("BMI", "bmi_kg_m2") if i == 0 else line
                                            for i, line in enumerate([lines[0], *lines[50:]])) + "\n")
    code = run_cli("check-batch", "--state-dir", str(settings.state_dir), "--input", str(folder))
    err = capsys.readouterr().err
    assert code == DataContractError.exit_code
    assert "the CSV files do not have the same columns (a.csv: [" in err and "'bmi_kg_m2'" in err
    assert_nothing_written(settings.state_dir)


def test_typed_parquet_is_held_to_the_same_rules_as_csv(settings, tmp_path, capsys):
    """Columns already of the contract's type skip the cast check, nothing else: a string column
    with a bad value still fails as in a CSV, a typed "not measured" marker still counts as
    missing, and out-of-range rows are still counted."""
    import pandas as pd

    frame = pd.read_csv(FIXTURES / "scoring_batch.csv")
    features = [c for c in frame.columns if c != "patient_id"]
    frame[features] = frame[features].astype("float64")
    cases = {
        "wrong_type": (frame.astype({"BMI": str}).assign(BMI=lambda f: f["BMI"].where(f.index != 5, "high")),
                       "wrong type: column BMI: 1 of 200 value(s) are not double (e.g. ['high'])"),
        "no_insulin": (frame.assign(Insulin=0.0),
                       "feature(s) missing in more than 90% of rows: Insulin 200 of 200 (100%)"),
    }
    for name, (data, expected) in cases.items():
        data.to_parquet(tmp_path / f"{name}.parquet")
        code = run_cli("check-batch", "--state-dir", str(settings.state_dir), "--input", str(tmp_path / f"{name}.parquet"))
        err = capsys.readouterr().err
        assert code == DataContractError.exit_code and expected in err, (name, err)
        assert_nothing_written(settings.state_dir)
    frame.assign(Glucose=frame["Glucose"].where(frame.index >= 3, 999.0)).to_parquet(tmp_path / "typed.parquet")
    assert prepare.check_batch(settings, str(tmp_path / "typed.parquet")) == (200, 3)


def test_an_input_without_rejects_gives_an_empty_quarantine_table(spark, settings):
    result = prepare.run(settings, PrepareConfig(input=str(FIXTURES / "diabetes_train.csv")))
    assert (result.rows_quarantined, sum(result.class_counts.values())) == (0, 1000)
    quarantine = read(spark, settings, "quarantine")
    assert quarantine.count() == 0 and {"rejection_reason", "source", "rejected_at"} <= set(quarantine.columns)
