"""score: batch identity, joining predictions back to keyless input, the champion's signature at the door.

One registry per module (trained on the keyless fixtures); each test scores into its own tables.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pandas as pd
import pytest
import yaml
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from spark_mlops import scoring
from spark_mlops.config import ScoreConfig, build_settings
from spark_mlops.errors import DataContractError
from spark_mlops.tables import tables_for
from tests.conftest import FIXTURES, run_cli

KEYLESS_BATCH = FIXTURES / "keyless/scoring_batch.csv"


# ---------------------------------------------------------------- pure


def test_default_batch_id_names_the_input_path_and_content(tmp_path):
    a, b = tmp_path / "a" / "latest.csv", tmp_path / "b" / "latest.csv"
    for path in (a, b):
        path.parent.mkdir()
        shutil.copyfile(KEYLESS_BATCH, path)
    id_a, id_b = scoring.default_batch_id(str(a)), scoring.default_batch_id(str(b))
    assert id_a.startswith("latest-") and id_b.startswith("latest-") and id_a != id_b
    assert scoring.default_batch_id(str(a)) == id_a  # same input, same batch: a rerun replaces it
    a.write_text(a.read_text() + "1,100,70,20,80,30,0.5,40\n")
    assert scoring.default_batch_id(str(a)) != id_a  # new content at the same path: a new batch
    written = scoring.default_batch_id(str(a))
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 1_000_000))
    assert scoring.default_batch_id(str(a)) != written  # written again (a new mtime), same size: a new batch
    folder = scoring.default_batch_id(str(tmp_path / "a"))
    assert folder.startswith("a-") and folder != scoring.default_batch_id(str(tmp_path / "b"))


def test_default_batch_id_of_a_table_follows_its_version():
    class Versions:
        version_of = "v-1"

        def version(self, name):
            return self.version_of

    tables = Versions()
    first = scoring.default_batch_id("main.ml.incoming", None, tables)
    assert first.startswith("incoming-") and scoring.default_batch_id("main.ml.incoming", None, tables) == first
    tables.version_of = "v-2"
    assert scoring.default_batch_id("main.ml.incoming", None, tables) != first


def test_signature_check_names_missing_and_mistyped_columns():
    signature = ModelSignature(inputs=Schema([ColSpec("double", "Glucose"), ColSpec("double", "Insulin"),
                                              ColSpec("double", "Age")]))
    scoring.check_signature(signature, {"Glucose": "double", "Insulin": "double", "Age": "double", "x": "string"},
                            "3", "b.csv")
    with pytest.raises(DataContractError) as err:
        scoring.check_signature(signature, {"Glucose": "double", "Insulin": "string"}, "3", "b.csv")
    assert str(err.value) == ("b.csv: the batch does not fit the champion v3's signature: missing ['Age']; "
                              "Insulin is string (model expects double) (was the model trained under another "
                              "data contract?)")


def test_the_raw_prediction_column_is_dropped_only_when_nothing_reads_it(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler, VectorSlicer

    df = spark.createDataFrame([(float(i), float(i % 7), i % 2) for i in range(40)], "a double, b double, y int")
    model = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"),
                             LogisticRegression(labelCol="y", maxIter=5)]).fit(df)
    lean = scoring.without_raw_prediction(model)
    out = lean.transform(df)
    assert "rawPrediction" not in out.columns and {"prediction", "probability"} <= set(out.columns)
    assert "rawPrediction" in model.transform(df).columns  # the loaded model itself is not changed
    full = model.transform(df).select("prediction", "probability").collect()
    assert out.select("prediction", "probability").collect() == full
    # A later stage that reads the raw column keeps it; a model without the param is returned as is.
    reader = Pipeline(stages=[*model.stages, VectorSlicer(inputCol="rawPrediction", outputCol="s", indices=[0])]).fit(df)
    assert scoring.without_raw_prediction(reader) is reader
    assert scoring.without_raw_prediction(model.stages[0]) is model.stages[0]


# ---------------------------------------------------------------- with a champion


@pytest.fixture(scope="module")
def keyless_champion(spark, tmp_path_factory):
    settings = build_settings(state_dir=str(tmp_path_factory.mktemp("keyless")))
    common = ("--state-dir", str(settings.state_dir))
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "keyless/diabetes_train.csv")) == 0
    # Typed hyperparameters end to end: an int, a boolean and a number in exponent notation.
    assert run_cli("train", *common, "--params", "numTrees=20,bootstrap=false,minInfoGain=1e-6") == 0
    assert run_cli("validate", *common) == 0
    assert run_cli("promote", *common) == 0
    return settings


def test_keyless_predictions_join_back_to_their_input_rows(spark, keyless_champion):
    s = keyless_champion
    assert run_cli("score", "--state-dir", str(s.state_dir), "--input", str(KEYLESS_BATCH),
                   "--output-table", "p_join", "--rejected-table", "r_join", "--batch-id", "") == 0
    predictions = tables_for(spark, s).read(s.table_name("p_join")).toPandas()
    source = pd.read_csv(KEYLESS_BATCH)
    features = list(source.columns)
    assert list(predictions.columns[: 1 + len(features)]) == ["row_id", *features]
    assert predictions["row_id"].is_unique and len(predictions) == len(source) == 200
    assert (predictions["batch_id"] == scoring.default_batch_id(str(KEYLESS_BATCH))).all()
    # The pass-through values are the input's own (0 stays 0, not the null the model saw).
    joined = source.merge(predictions, on=features, how="left", validate="one_to_one")
    assert joined["prediction"].notna().all()
    assert (source["Insulin"] == 0).any()
    # No row was rejected, so no rejects table (a batch with rejects: the test below).
    tables = tables_for(spark, s)
    assert tables.exists(s.table_name("p_join")) and not tables.exists(s.table_name("r_join"))


def test_same_named_inputs_in_two_folders_are_two_batches_and_a_rerun_replaces_its_own(spark, keyless_champion,
                                                                                        tmp_path):
    s = keyless_champion
    inputs = []
    for folder in ("a", "b"):
        path = tmp_path / folder / "latest.csv"
        path.parent.mkdir()
        shutil.copyfile(KEYLESS_BATCH, path)
        inputs.append(str(path))
    table = ("--output-table", "p_batches", "--rejected-table", "r_batches")
    for path in [*inputs, inputs[0]]:
        assert run_cli("score", "--state-dir", str(s.state_dir), "--input", path, *table) == 0
    counts = (tables_for(spark, s).read(s.table_name("p_batches")).groupBy("batch_id").count()
              .toPandas().set_index("batch_id")["count"].to_dict())
    assert counts == {scoring.default_batch_id(inputs[0]): 200, scoring.default_batch_id(inputs[1]): 200}


def test_a_champion_that_does_not_fit_the_batch_is_refused_before_scoring(spark, keyless_champion, tmp_path, capsys):
    """A contract without Insulin lets the batch through; the champion's signature does not."""
    from importlib import resources

    packaged = yaml.safe_load(resources.files("spark_mlops.contracts").joinpath("pima_diabetes.yml").read_text())
    columns = packaged["schema"][0]["properties"]  # an ODCS document: the columns of its one dataset
    columns[:] = [c for c in columns if c["name"] != "Insulin"]
    contract = tmp_path / "no_insulin.yml"
    contract.write_text(yaml.safe_dump(packaged))
    s = keyless_champion
    code = run_cli("score", "--state-dir", str(s.state_dir), "--contract", str(contract), "--input",
                   str(KEYLESS_BATCH), "--output-table", "p_sig", "--rejected-table", "r_sig")
    err = capsys.readouterr().err
    assert code == DataContractError.exit_code
    assert "does not fit the champion v1's signature: Insulin is string (model expects double)" in err
    assert not tables_for(spark, s).exists(s.table_name("p_sig"))
    assert not tables_for(spark, s).exists(s.table_name("r_sig"))


def test_rejects_are_written_only_when_there_are_some_and_a_clean_rerun_clears_them(spark, keyless_champion,
                                                                                   tmp_path):
    s = keyless_champion
    lines = KEYLESS_BATCH.read_text().splitlines()
    bad = tmp_path / "with_rejects.csv"
    # Two rows out of range (Glucose > 400): rejected, not scored.
    bad.write_text("\n".join([lines[0], *[",".join([f.split(",")[0], "999", *f.split(",")[2:]]) for f in lines[1:3]],
                              *lines[3:]]) + "\n")
    tables = tables_for(spark, s)

    clean = scoring.run(s, ScoreConfig(input=str(KEYLESS_BATCH), output_table="p_rej", rejected_table="r_rej",
                                       batch_id="b1"))
    assert (clean.rows_in, clean.rows_out, clean.rows_rejected) == (200, 200, 0)
    assert not tables.exists(s.table_name("r_rej"))  # no rejects: no rejects table

    result = scoring.run(s, ScoreConfig(input=str(bad), output_table="p_rej", rejected_table="r_rej", batch_id="b1"))
    assert (result.rows_in, result.rows_out, result.rows_rejected) == (200, 198, 2)
    assert tables.read(s.table_name("p_rej")).where("batch_id = 'b1'").count() == 198
    assert tables.read(s.table_name("r_rej")).where("batch_id = 'b1'").count() == 2
    scoring.run(s, ScoreConfig(input=str(bad), output_table="p_rej", rejected_table="r_rej", batch_id="b2"))

    scoring.run(s, ScoreConfig(input=str(KEYLESS_BATCH), output_table="p_rej", rejected_table="r_rej", batch_id="b1"))
    rejects = tables.read(s.table_name("r_rej")).groupBy("batch_id").count().collect()
    assert {r["batch_id"]: r["count"] for r in rejects} == {"b2": 2}  # b1's old rejects are gone, b2's stay
    assert tables.read(s.table_name("p_rej")).where("batch_id = 'b1'").count() == 200
    # The clean rerun's two commits: the rejects' DELETE of b1, then the predictions of b1.
    cleared, scored = tables.history(s.table_name("r_rej"), 1)[0], tables.history(s.table_name("p_rej"), 1)[0]
    assert (cleared["operation"], json.loads(cleared["userMetadata"])["batch_id"]) == ("DELETE", "b1")
    assert cleared["timestamp"] <= scored["timestamp"] and json.loads(scored["userMetadata"])["batch_id"] == "b1"


def _as_parquet(csv, folder):
    """The CSV batch as a typed parquet folder (doubles, as a pipeline would land it)."""
    folder.mkdir()
    pd.read_csv(csv).astype("float64").to_parquet(folder / "part-00000.parquet", index=False)
    return folder


def test_a_typed_batch_is_read_by_the_writes_only_and_counted_from_their_commits(spark, keyless_champion,
                                                                               tmp_path):
    """A parquet batch: no counting pass before the writes. The rejects are always written (an empty
    write clears the batch), and every count is what the two commits recorded they wrote."""
    s = keyless_champion
    lines = KEYLESS_BATCH.read_text().splitlines()
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join([lines[0], *[",".join([f.split(",")[0], "999", *f.split(",")[2:]])
                                              for f in lines[1:4]], *lines[4:]]) + "\n")
    clean, bad = _as_parquet(KEYLESS_BATCH, tmp_path / "clean"), _as_parquet(bad_csv, tmp_path / "bad")
    tables = tables_for(spark, s)
    counts = {}

    def score(source, batch):
        r = scoring.run(s, ScoreConfig(input=str(source), output_table="p_typed", rejected_table="r_typed",
                                       batch_id=batch))
        for name in ("p_typed", "r_typed"):
            counts[name] = {row["batch_id"]: row["count"] for row in
                            tables.read(s.table_name(name)).groupBy("batch_id").count().collect()}
        return r.rows_in, r.rows_out, r.rows_rejected

    assert score(bad, "b1") == (200, 197, 3) and counts == {"p_typed": {"b1": 197}, "r_typed": {"b1": 3}}
    assert score(clean, "b1") == (200, 200, 0) and counts == {"p_typed": {"b1": 200}, "r_typed": {}}
    emptied = tables.history(s.table_name("r_typed"), 1)[0]  # a write of no rows: b1's old rejects are gone
    assert emptied["operation"] == "WRITE" and emptied["operationMetrics"]["numFiles"] == "0"
    assert json.loads(emptied["userMetadata"])["batch_id"] == "b1"


def test_an_empty_typed_batch_is_refused_before_anything_is_written(spark, keyless_champion, tmp_path, capsys):
    s = keyless_champion
    empty = tmp_path / "empty"
    empty.mkdir()
    pd.read_csv(KEYLESS_BATCH).astype("float64").head(0).to_parquet(empty / "part-00000.parquet", index=False)
    code = run_cli("score", "--state-dir", str(s.state_dir), "--input", str(empty), "--output-table", "p_empty",
                   "--rejected-table", "r_empty", "--batch-id", "b1")
    assert code == DataContractError.exit_code
    assert f"{empty}: no data rows (expected at least 1, found 0)" in capsys.readouterr().err
    tables = tables_for(spark, s)
    assert not tables.exists(s.table_name("p_empty")) and not tables.exists(s.table_name("r_empty"))


def test_written_predictions_carry_no_raw_prediction(spark, keyless_champion):
    s = keyless_champion
    scoring.run(s, ScoreConfig(input=str(KEYLESS_BATCH), output_table="p_cols", rejected_table="r_cols",
                               batch_id="b1"))
    columns = tables_for(spark, s).read(s.table_name("p_cols")).columns
    assert columns[-6:] == ["prediction", "probability", "model_name", "model_version", "scored_at", "batch_id"]
    assert not [c for c in columns if "raw" in c.lower()]


def test_without_a_target_the_error_names_the_models_the_registry_holds(trained, capsys):
    """After the demo the registry holds only targets' models: a command naming the local default
    model says which models exist and how to reach them, instead of only "no @champion"."""
    absent = f"scored_elsewhere_{uuid.uuid4().hex[:6]}"
    trained.fresh("1", name=f"prod.spark_mlops.{absent}")
    code = run_cli("score", *trained.common, "--model-name", absent, "--input", str(FIXTURES / "scoring_batch.csv"))
    err = capsys.readouterr().err
    assert code == 8
    assert f"model {absent} has no @champion" in err
    assert f"prod.spark_mlops.{absent} (-t prod)" in err
    assert "pass -t TARGET or --model-name NAME" in err


# ---------------------------------------------------------------- score after check-batch (issue 30)


def _in_job_run(settings, job_run_id):
    from dataclasses import replace

    return replace(settings, job_run_id=job_run_id)


def _last_rejects_commit(spark, s, table):
    commit = tables_for(spark, s).history(s.table_name(table), 1)[0]
    return commit["operation"], json.loads(commit["userMetadata"]).get("job_run_id")


def _typed_batches(tmp_path):
    """The keyless batch as parquet, clean and with three rows out of contract (Glucose 999)."""
    lines = KEYLESS_BATCH.read_text().splitlines()
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join([lines[0], *[",".join([f.split(",")[0], "999", *f.split(",")[2:]])
                                              for f in lines[1:4]], *lines[4:]]) + "\n")
    return _as_parquet(KEYLESS_BATCH, tmp_path / "clean"), _as_parquet(bad_csv, tmp_path / "bad")


def _score(s, source, table, batch="b1"):
    r = scoring.run(s, ScoreConfig(input=str(source), output_table=f"p_{table}", rejected_table=f"r_{table}",
                                   batch_id=batch))
    return r.rows_in, r.rows_out, r.rows_rejected


def _batch_counts(spark, s, name):
    return {r["batch_id"]: r["count"] for r in tables_for(spark, s).read(s.table_name(name)).groupBy("batch_id")
            .count().collect()}


def test_a_typed_batch_check_batch_counted_clean_in_the_same_job_run_is_read_once(spark, keyless_champion, tmp_path):
    """check-batch of job run j1 counted the parquet batch clean: score of j1 deletes the batch's old
    rejects (a DELETE: no read of the batch) instead of writing rejects (a WRITE that reads it)."""
    from spark_mlops import prepare

    s = keyless_champion
    clean, bad = _typed_batches(tmp_path)
    assert _score(_in_job_run(s, "j0"), bad, "once") == (200, 197, 3)  # b1 has old rejects
    j1 = _in_job_run(s, "j1")
    assert prepare.check_batch(j1, str(clean)) == (200, 0)
    assert _score(j1, clean, "once") == (200, 200, 0)
    assert _last_rejects_commit(spark, s, "r_once") == ("DELETE", "j1")
    assert "b1" not in _batch_counts(spark, s, "r_once") and _batch_counts(spark, s, "p_once") == {"b1": 200}
    # Writes since j0's: one DELETE of the rejects, one WRITE of the predictions, nothing else.
    rejects, predictions = (tables_for(spark, s).history(s.table_name(n), 2) for n in ("r_once", "p_once"))
    assert [c["operation"] for c in rejects] == ["DELETE", "WRITE"]
    assert [json.loads(c["userMetadata"])["job_run_id"] for c in predictions] == ["j1", "j0"]


def test_a_batch_check_batch_counted_with_rejects_is_written_rejects_first(spark, keyless_champion, tmp_path):
    from spark_mlops import prepare

    s = keyless_champion
    _, bad = _typed_batches(tmp_path)
    j = _in_job_run(s, "jr")
    assert prepare.check_batch(j, str(bad)) == (200, 3)
    assert _score(j, bad, "counted") == (200, 197, 3)
    assert _last_rejects_commit(spark, s, "r_counted") == ("WRITE", "jr")


def test_a_check_of_another_job_run_is_not_trusted(spark, keyless_champion, tmp_path):
    """j3's check of the very same input does not vouch for j4's score: j4 writes the rejects (an
    empty WRITE, reading the batch); j3's own score only deletes (no rejects left: no commit at all)."""
    from spark_mlops import prepare

    s = keyless_champion
    clean, _ = _typed_batches(tmp_path)
    assert prepare.check_batch(_in_job_run(s, "j3"), str(clean)) == (200, 0)
    assert _score(_in_job_run(s, "j4"), clean, "other") == (200, 200, 0)
    assert _last_rejects_commit(spark, s, "r_other") == ("WRITE", "j4")
    commits = len(tables_for(spark, s).history(s.table_name("r_other")))
    assert _score(_in_job_run(s, "j3"), clean, "other") == (200, 200, 0)
    assert len(tables_for(spark, s).history(s.table_name("r_other"))) == commits
    assert _batch_counts(spark, s, "p_other") == {"b1": 200}


def test_an_input_changed_after_its_check_is_scored_as_an_unchecked_one(spark, keyless_champion, tmp_path):
    """j5 checked the clean batch; then the folder got other content (rows out of contract) under
    the same path. score writes its rejects first; a repair that checks again is trusted again."""
    from spark_mlops import prepare

    s = keyless_champion
    clean, bad = _typed_batches(tmp_path)
    j5 = _in_job_run(s, "j5")
    assert prepare.check_batch(j5, str(clean)) == (200, 0)
    shutil.copy(bad / "part-00000.parquet", clean / "part-00000.parquet")
    assert _score(j5, clean, "changed") == (200, 197, 3)
    assert _last_rejects_commit(spark, s, "r_changed") == ("WRITE", "j5")
    assert _batch_counts(spark, s, "r_changed") == {"b1": 3} and _batch_counts(spark, s, "p_changed") == {"b1": 197}
    # The repaired run: check-batch again (rejects counted), then the clean content and its check.
    assert prepare.check_batch(j5, str(clean)) == (200, 3)
    assert _score(j5, clean, "changed") == (200, 197, 3)
    _as_parquet(KEYLESS_BATCH, tmp_path / "clean_again")
    assert prepare.check_batch(j5, str(tmp_path / "clean_again")) == (200, 0)
    assert _score(j5, tmp_path / "clean_again", "changed") == (200, 200, 0)
    assert _last_rejects_commit(spark, s, "r_changed") == ("DELETE", "j5")


def test_a_change_the_input_identity_does_not_show_is_caught_by_the_predictions_write(spark, keyless_champion,
                                                                                        tmp_path, capsys):
    """A check record that names this very input but counted no rejects (as a copy keeping size and
    modification time would leave): the predictions' write meets the rejected rows, commits nothing,
    and score writes the rejects first: no row out of contract is scored, none is lost."""
    from spark_mlops import batch_check
    from spark_mlops import contract as dc

    s = keyless_champion
    _, bad = _typed_batches(tmp_path)
    j6 = _in_job_run(s, "j6")
    identity = batch_check.input_identity(str(bad), j6, tables_for(spark, s))
    batch_check.record(j6, identity, dc.load_contract(s.contract), 200, 0)
    assert _score(j6, bad, "guard") == (200, 197, 3)
    assert "rows out of contract that check-batch did not count" in capsys.readouterr().out
    assert _batch_counts(spark, s, "r_guard") == {"b1": 3} and _batch_counts(spark, s, "p_guard") == {"b1": 197}
    assert [c["operation"] for c in tables_for(spark, s).history(s.table_name("p_guard"))] == ["WRITE"]
