"""Unit tests of the pure data-contract transformations on small DataFrames."""

from __future__ import annotations

import pytest

from spark_mlops import contract as dc
from spark_mlops.errors import DataContractError

CONTRACT = dc.load_contract()
COLUMNS = dc.expected_columns(CONTRACT, with_label=True)


def row(**overrides):
    base = {"patient_id": "p1", "Pregnancies": 1.0, "Glucose": 120.0, "BloodPressure": 70.0,
            "SkinThickness": 20.0, "Insulin": 80.0, "BMI": 30.0, "DiabetesPedigreeFunction": 0.5,
            "Age": 40.0, "Outcome": 1}
    return tuple({**base, **overrides}[c] for c in COLUMNS)


def frame(spark, *rows):
    schema = ", ".join(f"{c} {'string' if c == 'patient_id' else 'int' if c == 'Outcome' else 'double'}"
                       for c in COLUMNS)
    return spark.createDataFrame(list(rows), schema)


def test_packaged_contract_describes_features_label_and_key():
    assert CONTRACT.label == "Outcome"
    assert CONTRACT.key_columns == ("patient_id",)
    assert len(CONTRACT.feature_names) == 8
    assert next(f for f in CONTRACT.features if f.name == "Insulin").missing_values == (0,)


def test_missing_column_error_names_source_columns_and_found():
    with pytest.raises(DataContractError) as err:
        dc.check_columns(["patient_id", "Age"], CONTRACT, "raw.csv", with_label=True)
    message = str(err.value)
    assert "raw.csv" in message and "'Glucose'" in message and "'Outcome'" in message
    assert "found columns ['patient_id', 'Age']" in message


def test_zero_means_missing_only_where_the_contract_says(spark):
    out = dc.apply_missing_markers(frame(spark, row(Glucose=0.0, Pregnancies=0.0, Insulin=0.0)), CONTRACT).first()
    assert out["Glucose"] is None and out["Insulin"] is None
    assert out["Pregnancies"] == 0.0  # zero pregnancies is a real value


def test_rejection_reasons_name_every_broken_rule(spark):
    df = frame(spark, row(), row(patient_id="p2", Glucose=999.0, Outcome=2), row(patient_id="p3", Age=None))
    reasons = {r["patient_id"]: r[dc.REASON_COLUMN]
               for r in dc.with_rejection_reason(df, CONTRACT, with_label=True).collect()}
    assert reasons["p1"] is None
    assert "Glucose=999.0 > 400" in reasons["p2"] and "Outcome=2 not in [0, 1]" in reasons["p2"]
    assert reasons["p3"] == "Age is missing"


def test_validity_is_the_absence_of_a_reason(spark):
    df = frame(spark, row(), row(patient_id="p2", Glucose=999.0, Outcome=2), row(patient_id="p3", Age=None),
               row(patient_id="p4", Glucose=None, Outcome=None), row(patient_id="p5", BMI=float("nan")))
    held = dc.with_rejection_reason(df, CONTRACT, with_label=True)
    valid = dc.is_valid(held.columns, CONTRACT, with_label=True)
    rows = held.select("patient_id", valid.alias("valid"), dc.REASON_COLUMN).collect()
    assert [r["valid"] for r in rows] == [r[dc.REASON_COLUMN] is None for r in rows] == [True, False, False, False, False]


def test_type_errors_are_counted_per_column(spark):
    raw = spark.createDataFrame([("p1", "12", "x"), ("p2", "", "3"), ("p3", "abc", "4")],
                                "patient_id string, Glucose string, BMI string")
    contract = dc.DataContract("t", "Outcome", (dc.FeatureSpec("Glucose"), dc.FeatureSpec("BMI")))
    counts = dc.type_error_counts(raw, contract, with_label=False).first().asDict()
    assert counts == {"Glucose": 1, "BMI": 1}  # an empty string is missing, not a wrong type


def test_split_is_deterministic_whatever_the_partitioning(spark):
    rows = [row(patient_id=f"p{i}", Glucose=float(100 + i % 50)) for i in range(400)]
    df = frame(spark, *rows)
    a = {r["patient_id"]: r["split"] for r in dc.assign_split(df.repartition(1), CONTRACT, 0.25, 42).collect()}
    b = {r["patient_id"]: r["split"] for r in dc.assign_split(df.repartition(7), CONTRACT, 0.25, 42).collect()}
    c = {r["patient_id"]: r["split"] for r in dc.assign_split(df, CONTRACT, 0.25, 43).collect()}
    assert a == b
    assert a != c
    assert 0.15 < sum(v == "holdout" for v in a.values()) / len(a) < 0.35


def test_conform_casts_to_the_contract_types(spark):
    raw = spark.createDataFrame([("1", "5", "1")], "patient_id string, Glucose string, Outcome string")
    contract = dc.DataContract("t", "Outcome", (dc.FeatureSpec("Glucose"),), key_columns=("patient_id",))
    out = dc.conform(raw, contract, with_label=True)
    assert dict(out.dtypes) == {"patient_id": "string", "Glucose": "double", "Outcome": "int"}


def test_columns_that_always_cast_to_the_contract_type_are_not_cast_checked(spark):
    """A double or a bigint always casts to double; a string may not, nor may a double to an int
    (out of range): those keep their check."""
    raw = spark.createDataFrame([("p1", 12.0, 7, "x", 1e12)], "patient_id string, Glucose double, Age bigint, BMI string, n double")
    contract = dc.DataContract("t", "Outcome", (dc.FeatureSpec("Glucose"), dc.FeatureSpec("Age"), dc.FeatureSpec("BMI"),
                                                dc.FeatureSpec("n", type="int")))
    assert list(dc.type_error_aggregates(dict(raw.dtypes), contract, with_label=False)) == ["BMI", "n"]
    assert dc.type_error_counts(raw, contract, with_label=False).first().asDict() == {"BMI": 1, "n": 1}
