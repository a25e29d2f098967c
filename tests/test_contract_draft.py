"""`spark-mlops contract draft`: an ODCS draft profiled from a file or a table with Spark, which the
standard's JSON schema accepts and the lifecycle reads; from a CSV to clean tables in two commands."""

from __future__ import annotations

import csv

import yaml

from spark_mlops import contract_file as cf
from spark_mlops.config import build_settings
from spark_mlops.spark import get_spark
from spark_mlops.tables import tables_for
from tests.conftest import FIXTURES, assert_nothing_written, run_cli
from tests.test_contract_file import odcs_errors

BREAST_CANCER = FIXTURES / "breast_cancer" / "train.csv"


def test_a_draft_from_a_csv_has_types_nullability_and_observed_ranges(spark, tmp_path, capsys):
    """Then the docs' first step after the draft: prepare with it."""
    out, state = tmp_path / "bc.yml", str(tmp_path / "state")
    assert run_cli("contract", "draft", "--input", str(BREAST_CANCER), "--label", "malignant", "--output", str(out),
                   "--state-dir", state) == 0
    assert f"contract draft: wrote {out}" in capsys.readouterr().out
    document = yaml.safe_load(out.read_text())
    assert odcs_errors(document) == []
    assert document["status"] == "draft" and document["name"] == "train"
    rows = list(csv.DictReader(BREAST_CANCER.open()))
    radius = next(p for p in document["schema"][0]["properties"] if p["name"] == "mean_radius")
    observed = [float(r["mean_radius"]) for r in rows]
    assert radius["logicalType"] == "number" and radius["required"] is True
    assert radius["logicalTypeOptions"] == {"minimum": min(observed), "maximum": max(observed)}
    contract = cf.load_contract(str(out))
    assert contract.label == "malignant" and contract.label_values == (0, 1)
    assert len(contract.features) == 30 and contract.key_columns == ()
    assert contract.model_name == "train_classifier"
    # The docs' first steps: the draft as it is holds the data it was drafted from.
    assert run_cli("prepare", "--contract", str(out), "--input", str(BREAST_CANCER), "--state-dir", state) == 0
    assert "456 rows in -> 456 clean" in capsys.readouterr().out
    assert build_settings(state_dir=state, contract=str(out)).model_name == "train_classifier"


def test_a_draft_from_a_table_and_from_a_csv_with_a_key_and_gaps(spark, tmp_path, capsys):
    """prepare the keyed Pima fixture, then draft from its clean table (typed columns, a text column)."""
    state = str(tmp_path / "state")
    assert run_cli("prepare", "--input", str(FIXTURES / "diabetes_with_bad_rows.csv"), "--state-dir", state) == 0
    capsys.readouterr()
    assert run_cli("contract", "draft", "--input", "clean", "--label", "Outcome", "--key", "patient_id",
                   "--state-dir", state) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert odcs_errors(document) == []
    columns = {p["name"]: p for p in document["schema"][0]["properties"]}
    assert columns["patient_id"]["primaryKey"] is True and columns["patient_id"]["unique"] is True
    assert columns["split"]["customProperties"] == [{"property": "mlRole", "value": "ignored"}]
    assert columns["Outcome"]["enum"] == [{"value": 0}, {"value": 1}]
    # The clean table holds the contract's nulls ("0 means not measured"): not required.
    assert "required" not in columns["Insulin"] and columns["Age"]["required"] is True
    settings = build_settings(state_dir=state)
    clean = tables_for(get_spark(settings), settings).read(settings.table_name("clean"))
    assert columns["Glucose"]["logicalTypeOptions"]["maximum"] == clean.agg({"Glucose": "max"}).first()[0]


def test_a_label_the_lifecycle_cannot_learn_is_refused_and_nothing_is_written(spark, tmp_path, capsys):
    out = tmp_path / "draft.yml"
    assert run_cli("contract", "draft", "--input", str(FIXTURES / "bad" / "label_yes_no.csv"), "--label", "Outcome",
                   "--output", str(out), "--state-dir", str(tmp_path / "state")) == 3
    err = capsys.readouterr().err
    assert "label Outcome has the value" in err and "the label must be an integer class (0/1); recode it" in err
    assert not out.exists()
    assert run_cli("contract", "draft", "--input", str(FIXTURES / "bad" / "duplicate_keys.csv"), "--label", "Outcome",
                   "--key", "patient_id", "--output", str(out), "--state-dir", str(tmp_path / "state")) == 3
    assert "key ['patient_id'] is not unique: 200 rows, 199 distinct" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_contract_stops_prepare_before_anything_is_written(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    document = yaml.safe_load((FIXTURES / "breast_cancer" / "breast_cancer.yml").read_text())
    document["schema"][0]["properties"][0]["logicalTypeOptions"]["minimum"] = "zero"
    bad.write_text(cf.to_yaml(document))
    state = tmp_path / "state"
    assert run_cli("prepare", "--contract", str(bad), "--input", str(BREAST_CANCER), "--state-dir", str(state)) == 2
    err = capsys.readouterr().err
    assert err == (f"spark-mlops prepare: error: data contract {bad}: schema[0].properties[0] (mean_radius)"
                   ".logicalTypeOptions.minimum: 'zero' is not a number\n")
    state.mkdir(exist_ok=True)
    (state / "warehouse").mkdir(exist_ok=True)
    assert_nothing_written(state)
