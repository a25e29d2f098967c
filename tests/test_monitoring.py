"""Monitoring (issue 11): the baseline every version carries, PSI against it, the verdict, the
monitoring table, the version tags and the drift gate's exit code.

One registry for the module (trained once): v1 is trained on the synthetic distribution and
scores four batches (same distribution, Glucose +50, Glucose null, a tiny one); then v2 is
trained on Glucose-shifted data and becomes @champion. Each test monitors its own batch, so
tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import math

import pytest
from pyspark.sql import functions as F

from spark_mlops import monitoring, registry, synthetic
from spark_mlops.config import build_settings
from spark_mlops.constants import EXIT_DRIFT
from spark_mlops.contract import DataContract, FeatureSpec
from spark_mlops.tables import tables_for
from tests.conftest import run_cli

FEATURES = list(synthetic.FEATURES)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    settings = build_settings(state_dir=str(root / "state"))
    common = ("--state-dir", str(settings.state_dir))

    def data(name: str, rows: int, seed: int, **drift) -> str:
        path = root / f"{name}.csv"
        synthetic.write(str(path), rows=rows, seed=seed, with_label=name.startswith("train"), **drift)
        return str(path)

    assert run_cli("prepare", *common, "--input", data("train_v1", 2000, 7)) == 0
    assert run_cli("train", *common, "--params", "numTrees=20,maxDepth=5") == 0
    assert run_cli("validate", *common) == 0
    assert run_cli("promote", *common) == 0
    batches = {
        "same": data("same", 1500, 11),
        "glucose": data("glucose", 1500, 12, shifts={"Glucose": 50}),
        "nulls": data("nulls", 1500, 13, nulls=["Glucose"]),
        "tiny": data("tiny", 50, 14),
        "again": data("again", 1500, 15),
        "gate_ok": data("gate_ok", 1500, 16),
        "gate_drift": data("gate_drift", 1500, 17, shifts={"Glucose": 50}),
    }
    for batch, path in batches.items():
        assert run_cli("score", *common, "--input", path, "--batch-id", batch) == 0

    # v2 learns from Glucose-shifted data and takes @champion: the batches above stay v1's.
    assert run_cli("prepare", *common, "--input", data("train_v2", 2000, 8, shifts={"Glucose": 50})) == 0
    assert run_cli("train", *common, "--params", "numTrees=20,maxDepth=5") == 0
    registry.set_alias(settings, "champion", "2")
    assert run_cli("score", *common, "--input", batches["glucose"], "--batch-id", "glucose_v2") == 0
    return settings


def monitor(settings, batch: str, *extra: str) -> int:
    return run_cli("monitor", "--state-dir", str(settings.state_dir), "--batch-id", batch, *extra)


def verdict_json(settings, batch: str, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert monitor(settings, batch, "--json", *extra) == 0
    return json.loads(capsys.readouterr().out)


def by_name(verdict: dict) -> dict:
    return {f["name"]: f for f in verdict["features"]}


# ---------------------------------------------------------------- the baseline


def test_every_version_carries_its_own_baseline(world):
    b1, b2 = monitoring.load_baseline(world, "1"), monitoring.load_baseline(world, "2")
    assert set(b1["features"]) == set(FEATURES)
    glucose = b1["features"]["Glucose"]
    assert 1 <= len(glucose["edges"]) <= 9 and glucose["edges"] == sorted(glucose["edges"])
    assert math.isclose(sum(glucose["fractions"]), 1.0) and len(glucose["fractions"]) == len(glucose["edges"]) + 1
    assert 0 < glucose["null_rate"] < 0.05 and 110 < glucose["mean"] < 130 and glucose["std"] > 20
    assert 0.2 < b1["label_rate"] < 0.6
    assert math.isclose(sum(b1["output"]["fractions"]), 1.0) and 0 < b1["output"]["positive_rate"] < 1
    assert b2["features"]["Glucose"]["mean"] > b1["features"]["Glucose"]["mean"] + 40
    tags = registry.get_version(world, "1").tags
    assert tags[monitoring.BASELINE_TAG] == f"runs:/{tags['training_run_id']}/{monitoring.BASELINE_ARTIFACT}"


# ---------------------------------------------------------------- verdicts


def test_a_batch_from_the_training_distribution_flags_nothing(world, capsys):
    v = verdict_json(world, "same", capsys)
    assert v["batch_id"] == "same" and v["model_version"] == "1"
    assert v["drift"] is False and v["verdict"] == "ok"
    assert [f["status"] for f in v["features"]] == ["ok"] * len(FEATURES)
    assert all(f["psi"] < 0.05 for f in v["features"]), v["features"]
    assert v["output"]["status"] == "ok"


def test_a_shifted_feature_flags_exactly_that_feature(world, capsys):
    v = verdict_json(world, "glucose", capsys)
    features = by_name(v)
    assert v["drift"] is True and v["verdict"] == "drift"
    assert features["Glucose"]["status"] == "drift" and features["Glucose"]["psi"] > 0.2
    assert [n for n, f in features.items() if f["status"] != "ok"] == ["Glucose"]


def test_a_feature_set_to_null_raises_the_quality_alert(world, capsys):
    v = verdict_json(world, "nulls", capsys)
    features = by_name(v)
    assert features["Glucose"]["status"] == "quality" and features["Glucose"]["null_rate"] == 1.0
    assert [n for n, f in features.items() if f["status"] != "ok"] == ["Glucose"]
    assert v["verdict"] in ("quality", "drift")  # the imputed Glucose may also move the output


def test_too_few_rows_give_no_verdict(world, capsys):
    v = verdict_json(world, "tiny", capsys)
    assert v["verdict"] == "insufficient" and v["drift"] is False
    assert {f["status"] for f in v["features"]} == {"insufficient"}
    assert monitor(world, "tiny") == 0
    assert "fewer than 100 scored rows: no drift verdict" in capsys.readouterr().out


def test_the_baseline_is_the_scoring_versions_even_after_champion_moved(world, capsys):
    assert registry.alias_version(world, "champion") == "2"
    # v1 scored "glucose": against v1's baseline Glucose drifted ...
    assert by_name(verdict_json(world, "glucose", capsys))["Glucose"]["status"] == "drift"
    # ... and the same rows scored by v2 (trained on shifted data) do not drift against v2's.
    v2 = verdict_json(world, "glucose_v2", capsys)
    assert v2["model_version"] == "2" and by_name(v2)["Glucose"]["status"] == "ok", v2


def test_monitoring_table_rows_and_re_monitoring_replaces_them(world, spark):
    tables = tables_for(spark, world)
    table = world.table_name("monitoring")
    assert monitor(world, "again") == 0
    first = tables.read(table).where(F.col("batch_id") == "again").collect()
    assert monitor(world, "again") == 0
    second = tables.read(table).where(F.col("batch_id") == "again").collect()
    assert len(first) == len(second) == 3 * len(FEATURES) + 5
    assert {r["run_id"] for r in first}.isdisjoint({r["run_id"] for r in second})  # replaced, not appended
    keys = [(r["model_version"], r["metric"], r["feature"]) for r in second]
    assert len(keys) == len(set(keys))  # one row per (batch, model version, metric, feature)
    psi = {r["feature"]: r for r in second if r["metric"] == "psi"}
    assert psi["Glucose"]["threshold"] == 0.2 and psi["Glucose"]["model_version"] == "1"


def test_version_tags_mlflow_run_and_status(world, capsys):
    from mlflow.tracking import MlflowClient

    v = verdict_json(world, "same", capsys)
    tags = registry.get_version(world, "1").tags
    assert tags["monitoring_last_batch"] == "same" and tags["monitoring_last_verdict"] == "ok"
    assert tags["monitoring_last_at"]
    run = MlflowClient(tracking_uri=world.tracking_uri).get_run(v["run_id"])
    assert run.data.tags["step"] == "monitor" and "psi_Glucose" in run.data.metrics
    artifacts = {a.path for a in MlflowClient(tracking_uri=world.tracking_uri).list_artifacts(v["run_id"], "plots")}
    assert "plots/drift.png" in artifacts
    assert run_cli("status", "--state-dir", str(world.state_dir)) == 0
    assert "same: ok" in capsys.readouterr().out


def test_thresholds_are_flags(world, capsys):
    v = verdict_json(world, "same", capsys, "--psi-threshold", "0.000001")
    assert v["drift"] is True and v["thresholds"]["psi"] == 0.000001
    assert monitor(world, "same", "--min-rows", "0") == 2
    assert monitor(world, "no_such_batch") == 3


def test_drift_check_exits_7_on_drift_only(world):
    common = ("--state-dir", str(world.state_dir))
    assert monitor(world, "gate_ok") == 0 and monitor(world, "gate_drift") == 0
    assert run_cli("drift-check", *common, "--batch-id", "gate_ok") == 0
    assert run_cli("drift-check", *common, "--batch-id", "gate_drift") == EXIT_DRIFT
    # In a job, only this run's verdict counts: none yet from run 42, so nothing to gate.
    assert run_cli("drift-check", *common, "--batch-id", "gate_drift", "--job-run-id", "42") == 0


# ---------------------------------------------------------------- PSI by hand


def test_psi_by_spark_matches_a_hand_computed_value(spark):
    contract = DataContract(name="t", label="y", features=(FeatureSpec("x"),))
    baseline = {
        "features": {"x": {"edges": [1.0, 2.0], "fractions": [0.5, 0.25, 0.25], "null_rate": 0.0}},
        "output": {"edges": [0.5], "fractions": [0.5, 0.5], "positive_rate": 0.5},
    }
    xs = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0, 3.0, None, None]  # bins 0,0,1,1,1,2,2,2 + 2 nulls
    probs = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.9, 0.4, 0.4]  # bins 0 x5, 1 x5... see below
    df = spark.createDataFrame([(x, p, int(p >= 0.5)) for x, p in zip(xs, probs, strict=True)],
                               "x double, probability double, prediction int")
    stats = monitoring.batch_stats(df, None, baseline, contract)
    assert stats["features"]["x"] == {"bins": [2, 3, 3], "nulls": 2, "rejected": 0}
    assert stats["output_bins"] == [5, 5] and stats["rows"] == 10
    v = monitoring.judge("b", "m", "1", baseline, stats, monitoring.Thresholds(min_rows=1, null_rate_increase=0.5))
    # a = (2/8, 3/8, 3/8), e = (1/2, 1/4, 1/4)
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + 2 * (0.375 - 0.25) * math.log(0.375 / 0.25)
    assert math.isclose(v.features[0].psi, by_hand, rel_tol=1e-12)
    assert math.isclose(by_hand, 0.2746530721670274, rel_tol=1e-12)
    assert v.features[0].status == "drift" and math.isclose(v.features[0].null_rate, 0.2)
    assert v.features[0].status == monitoring.feature_status(by_hand, 0.2, monitoring.Thresholds(null_rate_increase=0.5))
    assert v.output_psi == 0.0 and v.positive_rate == 0.5


def test_psi_pure_function_edges():
    assert monitoring.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert math.isfinite(monitoring.psi([1.0, 0.0], [0.0, 1.0]))  # empty bins are floored, not infinite
    assert monitoring.bin_edges([3.0, 1.0, 1.0, None, float("nan")]) == [1.0, 3.0]
    assert [monitoring.bin_of(x, [1.0, 2.0]) for x in (0.9, 1.0, 1.99, 2.0, 5.0)] == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        monitoring.psi([1.0], [0.5, 0.5])


def test_generate_data_shift_and_null(tmp_path):
    same = synthetic.generate(200, 3)
    drifted = synthetic.drift(same, {"Glucose": 50}, ["BMI"])
    measured = same["Glucose"] != 0
    assert (drifted.loc[measured, "Glucose"] == same.loc[measured, "Glucose"] + 50).all()
    assert drifted["BMI"].isna().all() and (drifted["Age"] == same["Age"]).all()
    assert run_cli("generate-data", "--output", str(tmp_path / "x.csv"), "--rows", "5", "--shift", "Nope=1") == 2
    assert run_cli("generate-data", "--output", str(tmp_path / "x.csv"), "--rows", "5", "--shift", "Glucose") == 2
