"""Contract files are ODCS v3.2 documents: the standard's JSON schema accepts every contract the
project ships, the reader refuses a bad one in one line (file, field, what is wrong) with exit 2,
the old format is refused with the command that converts it, and the model's name follows the
contract when none is given. No Spark here (tests/test_contract_draft.py drafts from data)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from open_data_contract_standard.model import OpenDataContractStandard

from spark_mlops import contract_file as cf
from spark_mlops.config import DEFAULT_MODEL_NAME, build_settings
from spark_mlops.errors import ConfigError
from tests.conftest import FIXTURES, REPO_ROOT, run_cli

PACKAGED = REPO_ROOT / "src" / "spark_mlops" / "contracts" / cf.PACKAGED_CONTRACT
BREAST_CANCER = FIXTURES / "breast_cancer" / "breast_cancer.yml"

# The Pima contract in the old spark-mlops format, as main shipped it before ODCS.
OLD_PIMA = """
name: pima_diabetes
label: Outcome
label_values: [0, 1]
key_columns: [patient_id]
require_key_columns: false
row_id_column: row_id
features:
  - {name: Pregnancies, type: double, min: 0, max: 25}
  - {name: Glucose, type: double, min: 30, max: 400, missing_values: [0]}
  - {name: BloodPressure, type: double, min: 20, max: 200, missing_values: [0]}
  - {name: SkinThickness, type: double, min: 3, max: 110, missing_values: [0]}
  - {name: Insulin, type: double, min: 5, max: 1000, missing_values: [0]}
  - {name: BMI, type: double, min: 10, max: 80, missing_values: [0]}
  - {name: DiabetesPedigreeFunction, type: double, min: 0.0, max: 3.0}
  - {name: Age, type: double, min: 18, max: 120, nullable: false}
"""


def odcs_errors(document: dict) -> list[str]:
    """The ODCS JSON schema's complaints (the schema file ships inside the standard's package)."""
    schema = json.loads(OpenDataContractStandard.json_schema())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def shipped_contracts() -> list[Path]:
    """Every contract the project ships: the packaged one and every ODCS file under fixtures/."""
    found = [PACKAGED, *sorted(p for p in FIXTURES.rglob("*.yml") if "apiVersion" in p.read_text())]
    assert BREAST_CANCER in found
    return found


@pytest.mark.parametrize("path", shipped_contracts(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_odcs_json_schema_accepts_every_shipped_contract(path):
    assert odcs_errors(yaml.safe_load(path.read_text())) == []
    cf.load_contract(str(path))  # and the lifecycle reads it


def test_the_schema_check_is_not_a_formality():
    document = yaml.safe_load(PACKAGED.read_text())
    document["schema"][0]["properties"][1]["requird"] = True
    assert any("'requird' was unexpected" in e for e in odcs_errors(document))


def test_packaged_contract_is_the_old_pima_contract_in_odcs():
    old = cf.contract_from_document(cf.convert_legacy(yaml.safe_load(OLD_PIMA)), "converted")
    new = cf.load_contract()
    assert new.declared_model_name == DEFAULT_MODEL_NAME
    assert new.features == old.features and new.label == old.label and new.label_values == old.label_values
    assert (new.key_columns, new.require_key_columns, new.row_id_column) == (("patient_id",), False, "row_id")
    assert new.pass_through_columns is None


def write(tmp_path: Path, document: dict | str, name: str = "contract.yml") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else cf.to_yaml(document))
    return str(path)


def pima() -> dict:
    return yaml.safe_load(PACKAGED.read_text())


def column(document: dict, name: str) -> dict:
    return next(p for p in document["schema"][0]["properties"] if p["name"] == name)


def _set(document, name, **fields):
    column(document, name).update(fields)
    return document


BAD = {
    "typo in a column field": (
        lambda d: _set(d, "Age", requird=True), "schema[0].properties[8] (Age).requird: not an ODCS field"),
    "typo in a top-level field": (
        lambda d: {**d, "custom_properties": []}, "custom_properties: not an ODCS field"),
    "minimum is a word": (
        lambda d: _set(d, "BMI", logicalTypeOptions={"minimum": "ten"}),
        "schema[0].properties[6] (BMI).logicalTypeOptions.minimum: 'ten' is not a number"),
    "minimum above maximum": (
        lambda d: _set(d, "BMI", logicalTypeOptions={"minimum": 80, "maximum": 10}),
        "(BMI).logicalTypeOptions: minimum 80 > maximum 10"),
    "a range option nothing checks": (
        lambda d: _set(d, "BMI", logicalTypeOptions={"exclusiveMinimum": 10}),
        "(BMI).logicalTypeOptions: ['exclusiveMinimum'] not checked by spark-mlops"),
    "a text feature": (
        lambda d: _set(d, "BMI", logicalType="string", physicalType="string"),
        "(BMI).logicalType: 'string': a feature is a number or an integer"),
    "no label": (
        lambda d: _set(d, "Outcome", customProperties=[]), "schema[0].properties: no label"),
    "a three-class label": (
        lambda d: _set(d, "Outcome", enum=[{"value": 0}, {"value": 1}, {"value": 2}]),
        "(Outcome).enum: [0, 1, 2]: a binary label needs exactly two integer values"),
    "a misspelt custom property": (
        lambda d: _set(d, "Glucose", customProperties=[{"property": "missingValue", "value": [0]}]),
        "(Glucose).customProperties: unknown custom property 'missingValue'"),
    "an unknown role": (
        lambda d: _set(d, "Outcome", customProperties=[{"property": "mlRole", "value": "target"}]),
        "(Outcome).customProperties.mlRole: 'target': expected one of label, feature, ignored"),
    "a model name that is no identifier": (
        lambda d: {**d, "customProperties": [{"property": "modelName", "value": "my model"}]},
        "customProperties.modelName: 'my model': expected a name"),
    "not ODCS v3": (
        lambda d: {**d, "apiVersion": "v2.2.2"}, "apiVersion: 'v2.2.2' is not an ODCS v3 version"),
    "no id": (
        lambda d: {k: v for k, v in d.items() if k != "id"}, "id: missing (ODCS requires"),
    "two datasets": (
        lambda d: {**d, "schema": d["schema"] * 2}, "schema: expected one schema object (the dataset), found 2"),
    "required is not a boolean": (
        lambda d: _set(d, "Age", required="sometimes"), "schema[0].properties[8].required: input should be a valid boolean"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_contract_is_one_line_naming_file_and_field(case, tmp_path, capsys):
    mutate, expected = BAD[case]
    path = write(tmp_path, mutate(pima()))
    assert run_cli("contract", "check", path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"spark-mlops contract: error: data contract {path}: ")
    assert expected in err


def test_every_problem_of_a_contract_is_on_its_one_line(tmp_path):
    document = _set(_set(pima(), "Age", requird=True), "BMI", logicalTypeOptions={"minimum": "ten"})
    with pytest.raises(ConfigError) as err:
        cf.load_contract(write(tmp_path, document))
    assert str(err.value).endswith("(BMI).logicalTypeOptions.minimum: 'ten' is not a number; "
                                   "schema[0].properties[8] (Age).requird: not an ODCS field")


def test_not_yaml_and_not_a_file_are_one_line_too(tmp_path, capsys):
    assert run_cli("contract", "check", write(tmp_path, "apiVersion: [v3\n")) == 2
    assert "line 2: not valid YAML" in capsys.readouterr().err
    assert run_cli("contract", "check", str(tmp_path / "nothing.yml")) == 2
    assert f"data contract {tmp_path / 'nothing.yml'}: no such file" in capsys.readouterr().err


def test_another_tools_custom_properties_are_left_alone(tmp_path):
    document = _set(pima(), "Glucose", customProperties=[
        {"property": "missingValues", "value": [0]},
        {"property": "piiLevel", "value": "low", "vendor": "atlan"}])
    assert odcs_errors(document) == []
    glucose = next(f for f in cf.load_contract(write(tmp_path, document)).features if f.name == "Glucose")
    assert glucose.missing_values == (0,)


def test_the_old_format_is_refused_with_the_command_that_converts_it(tmp_path, capsys):
    old = write(tmp_path, OLD_PIMA, "old.yml")
    assert run_cli("prepare", "--contract", old, "--model-name", "m", "--input", "x.csv",
                   "--state-dir", str(tmp_path / "state")) == 2
    err = capsys.readouterr().err
    assert f"the old spark-mlops format (label:, features:) is no longer read; convert it to ODCS once: " \
           f"spark-mlops contract convert {old} --output NEW.yml" in err
    assert not (tmp_path / "state" / "warehouse").exists()

    new = tmp_path / "new.yml"
    assert run_cli("contract", "convert", old, "--output", str(new)) == 0
    assert odcs_errors(yaml.safe_load(new.read_text())) == []
    assert cf.load_contract(str(new)).features == cf.load_contract().features
    assert run_cli("contract", "convert", old, "--output", str(new)) == 2  # never replaced unasked
    assert f"{new} exists: pass --force to replace it" in capsys.readouterr().err


def test_the_model_name_follows_the_contract_when_none_is_given(tmp_path, monkeypatch):
    state = str(tmp_path / "state")
    assert build_settings(state_dir=state).model_name == DEFAULT_MODEL_NAME == cf.load_contract().model_name
    assert build_settings(state_dir=state, contract=str(BREAST_CANCER)).model_name == "breast_cancer_classifier"
    unnamed = pima()
    unnamed["customProperties"] = [p for p in unnamed["customProperties"] if p["property"] != "modelName"]
    unnamed["name"] = "Pima Indians (1990)"
    assert build_settings(state_dir=state, contract=write(tmp_path, unnamed)).model_name == "pima_indians_1990_classifier"
    # A name given wins: the flag, or the environment variable.
    assert build_settings(state_dir=state, contract=str(BREAST_CANCER), model_name="mine").model_name == "mine"
    monkeypatch.setenv("SPARK_MLOPS_MODEL_NAME", "from_env")
    assert build_settings(state_dir=state, contract=str(BREAST_CANCER)).model_name == "from_env"


def test_a_volume_contract_path_is_read_from_the_state_folder_locally(tmp_path):
    state = tmp_path / "state"
    inside = state / "volumes" / "c" / "s" / "raw" / "contracts" / "bc.yml"
    inside.parent.mkdir(parents=True)
    inside.write_text(BREAST_CANCER.read_text())
    settings = build_settings(state_dir=str(state), contract="/Volumes/c/s/raw/contracts/bc.yml")
    assert settings.contract == str(inside) and settings.model_name == "breast_cancer_classifier"
