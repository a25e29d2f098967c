"""Monitoring (issue 11): the baseline every version carries, PSI against it, the verdict, the
monitoring table, the version tags and the drift gate's exit code.

One registry for the module (trained once): v1 is trained on the synthetic distribution and
scores four batches (same distribution, Glucose +50, Glucose null, a tiny one); then v2 is
trained on Glucose-shifted data and becomes @champion. Each test monitors its own batch, so
tests do not depend on each other's order. The scenario costs most of a minute, so its tests run
with the slow checks, where the drift jobs through the local runner need it too (one pytest
worker builds it once); the statistics' own tests below it stay in the quick suite.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F

from spark_mlops import monitoring, registry
from spark_mlops.config import build_settings
from spark_mlops.constants import EXIT_DRIFT
from spark_mlops.contract import DataContract, FeatureSpec
from spark_mlops.tables import tables_for
from spark_mlops_dev import synthetic
from tests.conftest import FIXTURES, run_cli

FEATURES = list(synthetic.FEATURES)


@dataclass
class World:
    settings: object
    inputs: dict[str, str]  # batch id -> the scored input (monitor joins it when score kept no features)


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
    }
    for batch, path in batches.items():
        assert run_cli("score", *common, "--input", path, "--batch-id", batch) == 0
    # Without a key column, score passes the feature columns through: monitor needs no --input.
    assert run_cli("score", *common, "--input", str(FIXTURES / "keyless" / "scoring_batch.csv"), "--batch-id",
                   "keyless", "--output-table", "keyless_predictions", "--rejected-table", "keyless_rejected") == 0

    # v2 learns from Glucose-shifted data and takes @champion: the batches above stay v1's.
    assert run_cli("prepare", *common, "--input", data("train_v2", 2000, 8, shifts={"Glucose": 50})) == 0
    assert run_cli("train", *common, "--params", "numTrees=20,maxDepth=5") == 0
    registry.set_alias(settings, "champion", "2")
    assert run_cli("score", *common, "--input", batches["glucose"], "--batch-id", "glucose_v2") == 0
    return World(settings, {**batches, "glucose_v2": batches["glucose"]})


def monitor(world: World, batch: str, *extra: str) -> int:
    source = ("--input", world.inputs[batch]) if batch in world.inputs else ()
    return run_cli("monitor", "--state-dir", str(world.settings.state_dir), "--batch-id", batch, *source, *extra)


def verdict_json(world: World, batch: str, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert monitor(world, batch, "--json", *extra) == 0
    return json.loads(capsys.readouterr().out)


def by_name(verdict: dict) -> dict:
    return {f["name"]: f for f in verdict["features"]}


# ---------------------------------------------------------------- the baseline


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_every_version_carries_its_own_baseline(world):
    b1, b2 = monitoring.load_baseline(world.settings, "1"), monitoring.load_baseline(world.settings, "2")
    assert set(b1["features"]) == set(FEATURES)
    glucose = b1["features"]["Glucose"]
    assert 1 <= len(glucose["edges"]) <= 9 and glucose["edges"] == sorted(glucose["edges"])
    assert math.isclose(sum(glucose["fractions"]), 1.0) and len(glucose["fractions"]) == len(glucose["edges"]) + 1
    assert 0 < glucose["null_rate"] < 0.05 and 110 < glucose["mean"] < 130 and glucose["std"] > 20
    assert glucose["rows"] == round(b1["rows"] * (1 - glucose["null_rate"]))  # non-null values: PSI's sample size
    assert b1["output"]["rows"] > 0  # the holdout's size
    assert 0.2 < b1["label_rate"] < 0.6
    assert math.isclose(sum(b1["output"]["fractions"]), 1.0) and 0 < b1["output"]["positive_rate"] < 1
    assert b2["features"]["Glucose"]["mean"] > b1["features"]["Glucose"]["mean"] + 40
    # The baseline is one of the version's own files (no URI a tag could point elsewhere).
    assert "baseline_uri" not in registry.get_version(world.settings, "1").tags


# ---------------------------------------------------------------- verdicts


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_a_batch_from_the_training_distribution_flags_nothing(world, capsys):
    v = verdict_json(world, "same", capsys)
    assert v["batch_id"] == "same" and v["model_version"] == "1"
    assert v["drift"] is False and v["verdict"] == "ok"
    assert [f["status"] for f in v["features"]] == ["ok"] * len(FEATURES)
    assert all(f["psi"] < 0.05 for f in v["features"]), v["features"]
    assert v["output"]["status"] == "ok"


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_a_shifted_feature_flags_exactly_that_feature(world, capsys):
    v = verdict_json(world, "glucose", capsys)
    features = by_name(v)
    assert v["drift"] is True and v["verdict"] == "drift"
    assert features["Glucose"]["status"] == "drift" and features["Glucose"]["psi"] > 0.2
    assert features["Glucose"]["psi"] > features["Glucose"]["psi_noise_bound"] > 0  # far beyond sampling noise
    assert [n for n, f in features.items() if f["status"] != "ok"] == ["Glucose"]


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_a_feature_set_to_null_raises_the_quality_alert(world, capsys):
    v = verdict_json(world, "nulls", capsys)
    features = by_name(v)
    assert features["Glucose"]["status"] == "quality" and features["Glucose"]["null_rate"] == 1.0
    assert [n for n, f in features.items() if f["status"] != "ok"] == ["Glucose"]
    # Glucose imputed with its training mean in every row moves P(class 1) beyond its noise bound
    assert v["verdict"] == "drift"


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_features_passed_through_by_score_need_no_input(world, spark, capsys):
    predictions = tables_for(spark, world.settings).read(world.settings.table_name("keyless_predictions"))
    assert set(FEATURES) <= set(predictions.columns)
    v = verdict_json(world, "keyless", capsys, "--predictions-table", "keyless_predictions",
                     "--rejected-table", "keyless_rejected")  # no --input: the predictions carry the features
    assert (v["rows"], v["verdict"], v["drift"]) == (200, "ok", False), v


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_a_small_batch_over_the_threshold_within_sampling_noise_is_not_drift(world, capsys):
    # 50 rows from the training distribution: some PSIs pass 0.2 on sampling noise alone.
    v = verdict_json(world, "tiny", capsys, "--min-rows", "10")
    for f in v["features"]:
        if f["status"] != "quality":  # a null-rate alert takes precedence over PSI
            assert (f["status"] == "drift") == (f["psi"] >= 0.2 and f["psi"] > f["psi_noise_bound"]), f
    noisy = [f for f in v["features"] if 0.2 <= f["psi"] <= f["psi_noise_bound"] and f["status"] == "ok"]
    assert noisy, v["features"]  # else this batch does not exercise the rule
    assert monitor(world, "tiny", "--min-rows", "10") == 0
    out = capsys.readouterr().out
    assert f"{noisy[0]['name']}: psi {noisy[0]['psi']:.3f} >= 0.2 but within the sampling-noise bound" in out
    assert "batch values: not drift" in out and "above its 99% sampling-noise bound drift" in out
    # Without the noise allowance the same batch is drift, as before.
    assert verdict_json(world, "tiny", capsys, "--min-rows", "10", "--psi-noise-quantile", "0")["drift"] is True


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_too_few_rows_give_no_verdict(world, capsys):
    v = verdict_json(world, "tiny", capsys)
    assert v["verdict"] == "insufficient" and v["drift"] is False
    assert {f["status"] for f in v["features"]} == {"insufficient"}
    assert monitor(world, "tiny") == 0
    assert "fewer than 100 scored rows: no drift verdict" in capsys.readouterr().out


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_the_baseline_is_the_scoring_versions_even_after_champion_moved(world, capsys):
    assert registry.alias_version(world.settings, "champion") == "2"
    # v1 scored "glucose": against v1's baseline Glucose drifted ...
    assert by_name(verdict_json(world, "glucose", capsys))["Glucose"]["status"] == "drift"
    # ... and the same rows scored by v2 (trained on shifted data) do not drift against v2's.
    v2 = verdict_json(world, "glucose_v2", capsys)
    assert v2["model_version"] == "2" and by_name(v2)["Glucose"]["status"] == "ok", v2


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_monitoring_table_rows_and_re_monitoring_replaces_them(world, spark):
    tables = tables_for(spark, world.settings)
    table = world.settings.table_name("monitoring")
    assert monitor(world, "same") == 0
    first = tables.read(table).where(F.col("batch_id") == "same").collect()
    assert monitor(world, "same") == 0
    second = tables.read(table).where(F.col("batch_id") == "same").collect()
    assert len(first) == len(second) == 3 * len(FEATURES) + 5
    assert {r["run_id"] for r in first}.isdisjoint({r["run_id"] for r in second})  # replaced, not appended
    keys = [(r["model_version"], r["metric"], r["feature"]) for r in second]
    assert len(keys) == len(set(keys))  # one row per (batch, model version, metric, feature)
    psi = {r["feature"]: r for r in second if r["metric"] == "psi"}
    assert psi["Glucose"]["threshold"] == 0.2 and psi["Glucose"]["model_version"] == "1"
    assert 0 < psi["Glucose"]["baseline"] < 0.2 and 0 < psi["(output)"]["baseline"]  # psi rows: the noise bound


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_version_tags_mlflow_run_and_status(world, capsys):
    from mlflow.tracking import MlflowClient

    v = verdict_json(world, "same", capsys)
    settings = world.settings
    tags = registry.get_version(settings, "1").tags
    assert tags["monitoring_last_batch"] == "same" and tags["monitoring_last_verdict"] == "ok"
    assert tags["monitoring_last_at"]
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(v["run_id"])
    assert run.data.tags["step"] == "monitor" and "psi_Glucose" in run.data.metrics
    artifacts = {a.path for a in MlflowClient(tracking_uri=settings.tracking_uri).list_artifacts(v["run_id"], "plots")}
    assert "plots/drift.png" in artifacts
    assert run_cli("status", "--state-dir", str(settings.state_dir)) == 0
    assert "same: ok" in capsys.readouterr().out


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_thresholds_are_flags(world, capsys):
    # A near-zero threshold flags the sampling noise itself once the noise allowance is off.
    v = verdict_json(world, "same", capsys, "--psi-threshold", "0.000001", "--psi-noise-quantile", "0")
    assert v["drift"] is True and v["thresholds"]["psi"] == 0.000001 and v["thresholds"]["psi_noise_quantile"] == 0
    assert monitor(world, "same", "--psi-noise-quantile", "1") == 2
    assert monitor(world, "same", "--min-rows", "0") == 2
    assert monitor(world, "no_such_batch") == 3


@pytest.mark.slow  # the registry scenario, built once with the drift jobs below
def test_drift_check_exits_7_on_drift_only(world):
    common = ("--state-dir", str(world.settings.state_dir))
    # Each check follows its own monitor run: another test may have monitored the batch with other thresholds.
    assert monitor(world, "same") == 0 and monitor(world, "glucose") == 0
    assert run_cli("drift-check", *common, "--batch-id", "same") == 0
    assert run_cli("drift-check", *common, "--batch-id", "glucose") == EXIT_DRIFT
    # In a job, only this run's verdict counts: none yet from run 42, so nothing to gate.
    assert run_cli("drift-check", *common, "--batch-id", "glucose", "--job-run-id", "42") == 0


# ---------------------------------------------------------------- the drift gate in a job

GATE_TASKS = ("monitor", "monitored", "drift_check", "retrain_on_drift", "trains_here", "retrain")
RETRAINING_LOG = "retraining.jsonl"


def record_retraining() -> None:
    """The stand-in retraining job's only task: records that it ran."""
    log = next(a.split("=", 1)[1] for a in __import__("sys").argv[1:] if a.startswith("--log="))
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("retrained\n")


def gate_bundle(root, world: World):
    """batch_inference's monitoring tasks exactly as resources/batch_inference.job.yml wires them
    (depends_on, run_if, conditions), with local parameters, and a stand-in retraining job."""
    import yaml

    from tests.conftest import REPO_ROOT

    real = yaml.safe_load((REPO_ROOT / "resources" / "batch_inference.job.yml").read_text())
    tasks = [t for t in real["resources"]["jobs"]["batch_inference"]["tasks"] if t["task_key"] in GATE_TASKS]
    assert [t["task_key"] for t in tasks] == list(GATE_TASKS)
    local = {"state-dir": str(world.settings.state_dir), "job-run-id": "{{job.run_id}}",
             "batch-id": "{{job.parameters.batch_id}}", "input": "{{job.parameters.input}}"}
    for t in tasks:
        t["depends_on"] = [d for d in t.get("depends_on", []) if d["task_key"] in GATE_TASKS] or None
        if t["depends_on"] is None:
            del t["depends_on"]
        if "python_wheel_task" in t:
            entry = t["python_wheel_task"]["entry_point"]
            t["python_wheel_task"]["named_parameters"] = {k: v for k, v in local.items()
                                                          if entry == "monitor" or k != "input"}
    retraining = {"name": "retraining", "max_concurrent_runs": 1, "queue": {"enabled": False},
                  "tasks": [{"task_key": "train", "python_wheel_task": {
                      "package_name": "spark_mlops", "entry_point": "record-retraining",
                      "named_parameters": {"log": str(root / RETRAINING_LOG)}},
                      "environment_key": "default"}]}  # the CLI refuses a wheel task without compute
    config = {"bundle": {"name": "gate"},
              "variables": {"retrain_on_drift": {"default": "false"}, "model_source": {"default": "train"}},
              "targets": {"staging": {"default": True, "variables": {"retrain_on_drift": "true"}},
                          "prod": {"variables": {"retrain_on_drift": "true", "model_source": "staging"}}},
              "resources": {"jobs": {
                  "batch_inference": {"name": "batch", "tasks": tasks, "parameters": [
                      {"name": "batch_id", "default": ""}, {"name": "input", "default": ""}]},
                  "retraining": retraining}}}
    (root / "databricks.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "pyproject.toml").write_text(
        '[project]\nname = "spark-mlops"\nversion = "0"\n[project.entry-points."spark_mlops.tasks"]\n'
        'monitor = "spark_mlops.cli:monitor_task"\ndrift-check = "spark_mlops.cli:drift_check_task"\n'
        'record-retraining = "tests.test_monitoring:record_retraining"\n')
    return root


@pytest.mark.parametrize(("target", "batch", "retrained", "state"), [
    ("staging", "glucose", True, "SUCCESS_WITH_FAILURES"),
    ("staging", "same", False, "SUCCESS"),
    # deploy the model: drift fails drift_check (its notification is the alert), nothing retrains
    ("prod", "glucose", False, "SUCCESS_WITH_FAILURES"),
])
@pytest.mark.slow  # whole jobs through the local runner, a process per task
def test_drift_starts_the_retraining_job_through_the_local_runner(world, tmp_path, target, batch, retrained, state):
    import io

    from spark_mlops_dev.bundle import runner
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    root = gate_bundle(tmp_path, world)
    bundle = resolve_bundle(root, target)
    result = runner.run_job(bundle, "batch_inference", {"batch_id": batch, "input": world.inputs[batch]},
                            out=io.StringIO())
    assert str(result.state) == state, result.summary()
    assert (root / RETRAINING_LOG).exists() is retrained
    if retrained:
        assert result.tasks["drift_check"].error == f"exited with code {EXIT_DRIFT}"
        assert result.tasks["retrain"].child.job_key == "retraining"
    else:
        assert str(result.tasks["retrain"].status) == "EXCLUDED"
    if target == "prod":
        assert result.tasks["drift_check"].error == f"exited with code {EXIT_DRIFT}"
        assert result.tasks["trains_here"].outcome is False


def test_the_optional_lakehouse_monitor_is_a_valid_quality_monitor():
    import yaml
    from databricks.bundles.quality_monitors import QualityMonitor

    from tests.conftest import REPO_ROOT

    spec = yaml.safe_load((REPO_ROOT / "resources" / "optional" / "quality_monitor.yml").read_text())
    assert set(spec["targets"]) == {"staging", "prod"}  # only targets that score have the table
    for target in spec["targets"].values():
        monitor_spec = target["resources"]["quality_monitors"]["predictions_monitor"]
        typed = QualityMonitor.from_dict(monitor_spec)
        assert typed.inference_log.model_id_col == "model_version" and typed.inference_log.timestamp_col == "scored_at"
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())
    assert "resources/optional/quality_monitor.yml" not in bundle["include"]  # off by default


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


def test_baseline_edges_come_from_a_seeded_sample_only_above_the_threshold(spark):
    from spark_mlops.evaluation import Evaluation

    contract = DataContract(name="t", label="y", features=(FeatureSpec("x"),))
    rows = 3000
    train = spark.createDataFrame([(float(i % 1000), i % 2) for i in range(rows)], "x double, y int").cache()
    holdout = Evaluation({}, {(0, 0): 1}, [], 1, 0, 0, (1,) + (0,) * 199)

    exact = monitoring.baseline_profile(train, contract, holdout)
    assert monitoring.baseline_profile(train, contract, holdout, split_rows=rows) == exact  # small: every row

    sampled = monitoring.baseline_profile(train, contract, holdout, split_rows=rows, edge_sample_rows=500)
    assert monitoring.baseline_profile(train, contract, holdout, split_rows=rows, edge_sample_rows=500) == sampled
    edges, exact_edges = sampled["features"]["x"]["edges"], exact["features"]["x"]["edges"]
    assert edges != exact_edges and len(edges) == len(exact_edges)
    assert all(abs(a - b) < 60 for a, b in zip(edges, exact_edges, strict=True))
    # Only the edges are sampled: the fractions, moments and row count take every row.
    counts = [0] * (len(edges) + 1)
    for i in range(rows):
        counts[monitoring.bin_of(float(i % 1000), edges)] += 1
    assert sampled["features"]["x"]["fractions"] == monitoring.fractions(counts)
    assert sampled["rows"] == rows and sampled["features"]["x"]["mean"] == exact["features"]["x"]["mean"]
    train.unpersist()


def draw(rng: random.Random, probabilities: list[float], n: int) -> list[int]:
    counts = [0] * len(probabilities)
    for b in rng.choices(range(len(probabilities)), weights=probabilities, k=n):
        counts[b] += 1
    return counts


def test_same_distribution_samples_stay_under_the_noise_bound():
    # The demo's sizes: a 191-row holdout against a 200-row batch, 10 equal bins, one distribution.
    rng, reps, n_e, n_a = random.Random(20261127), 200, 191, 200
    over, psis = 0, []
    for _ in range(reps):
        e, a = draw(rng, [0.1] * 10, n_e), draw(rng, [0.1] * 10, n_a)
        value = monitoring.psi(monitoring.fractions(e), monitoring.fractions(a))
        psis.append(value)
        bins = monitoring.populated_bins(monitoring.fractions(e), a)
        over += value > monitoring.psi_noise_bound(n_e, n_a, bins, 0.99)
    # 1 of 200 with this seed; the margin allows 3% because PSI's tail is a little heavier than
    # chi-square's at these sizes (1.44% over 20,000 draws: scripts/psi_noise.py).
    assert over <= 6, over
    # The approximation's mean, (k - 1)(1/n_e + 1/n_a), is the simulated one.
    assert math.isclose(sum(psis) / reps, 9 * (1 / n_e + 1 / n_a), rel_tol=0.2)
    assert 0.2 < monitoring.psi_noise_bound(n_e, n_a, 10, 0.99) < 0.25


def test_chi2_quantile_and_noise_bound():
    # chi-square 99% quantiles (scipy.stats.chi2.ppf): Wilson-Hilferty is within 1% of them.
    for df, exact in ((1, 6.634897), (2, 9.210340), (9, 21.665994), (30, 50.892181)):
        assert math.isclose(monitoring.chi2_quantile(0.99, df), exact, rel_tol=0.01)
    assert monitoring.chi2_quantile(0.99, 0) == 0.0
    assert monitoring.psi_noise_bound(None, 200, 10, 0.99) is None  # baseline without sizes: no allowance
    assert monitoring.psi_noise_bound(191, 200, 10, 0.0) == 0.0  # --psi-noise-quantile 0: no allowance
    assert monitoring.populated_bins([0.5, 0.5, 0.0, 0.0], [3, 0, 1, 0]) == 3
    assert monitoring.feature_rows({"rows": 100, "features": {"x": {"null_rate": 0.25}}}, "x") == 75
    assert monitoring.feature_rows({"features": {"x": {"null_rate": 0.25}}}, "x") is None


def test_a_psi_over_the_threshold_within_its_noise_bound_is_not_drift():
    t = monitoring.Thresholds(min_rows=1)
    baseline = {"rows": 191, "features": {"x": {"edges": [1.0], "fractions": [0.5, 0.5], "null_rate": 0.0}},
                "output": {"edges": [0.5], "fractions": [0.5, 0.5], "rows": 191, "positive_rate": 0.5}}
    # 20 batch rows split 14/6: PSI 0.165; 15/5 gives 0.275, over 0.2 yet within (1/191 + 1/20) * chi2_99(1).
    stats = {"rows": 20, "rejected": 0, "positive_rate": 0.5, "output_bins": [10, 10],
             "features": {"x": {"bins": [15, 5], "nulls": 0, "rejected": 0}}}
    v = monitoring.judge("b", "m", "1", baseline, stats, t)
    x = v.features[0]
    assert math.isclose(x.psi, 0.25 * math.log(0.75 / 0.5) + 0.25 * math.log(0.5 / 0.25))
    assert x.psi >= 0.2 and math.isclose(x.psi_noise_bound, (1 / 191 + 1 / 20) * monitoring.chi2_quantile(0.99, 1))
    assert x.psi < x.psi_noise_bound and x.status == "ok" and v.verdict == "ok" and x.within_noise
    assert f"x: psi {x.psi:.3f} >= 0.2 but within the sampling-noise bound {x.psi_noise_bound:.3f} of 191 baseline " \
           "and 20 batch values: not drift" in v.table_lines()
    assert v.as_json()["features"][0]["psi_noise_bound"] == round(x.psi_noise_bound, 6)
    psi_row = next(r for r in monitoring.verdict_rows(v, None) if r[2] == "psi" and r[3] == "x")
    assert psi_row[5] == x.psi_noise_bound and psi_row[6] == 0.2  # baseline column: the bound; threshold kept
    # A baseline recorded without sizes gets no allowance: the old rule.
    old = {**baseline, "features": {"x": {**baseline["features"]["x"]}}}
    del old["rows"]
    assert monitoring.judge("b", "m", "1", old, stats, t).features[0].status == "drift"


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
