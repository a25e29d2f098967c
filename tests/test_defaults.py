"""Each default is defined once (spark_mlops.defaults): the bundle's variables and the flags agree with it."""

from __future__ import annotations

import pytest
import yaml

from spark_mlops import commands
from spark_mlops import defaults as D
from spark_mlops.config import gate_thresholds, parse_number
from tests.conftest import REPO_ROOT

# bundle variable -> (the default it must equal, how the variable spells it)
BUNDLE_VARIABLES = {
    "min_thresholds": D.MIN_THRESHOLDS,
    "primary_metric": D.PRIMARY_METRIC,
    "max_tolerance": D.MAX_TOLERANCE,
    "drift_psi_threshold": D.PSI_THRESHOLD,
    "drift_null_rate_increase": D.NULL_RATE_INCREASE,
    "drift_min_rows": D.MIN_ROWS_FOR_VERDICT,
    "clean_table": D.CLEAN_TABLE,
    "quarantine_table": D.QUARANTINE_TABLE,
    "predictions_table": D.PREDICTIONS_TABLE,
    "scoring_rejected_table": D.SCORING_REJECTED_TABLE,
    "monitoring_table": D.MONITORING_TABLE,
    "approval_required": D.APPROVAL_REQUIRED,
}


def _as_default(text: str, like: object) -> object:
    if isinstance(like, dict):
        return gate_thresholds(text, "")
    if isinstance(like, bool):
        return commands.parse_bool(text)
    if isinstance(like, int | float):
        return parse_number(str(text), "bundle variable")
    return text


@pytest.mark.parametrize("variable", sorted(BUNDLE_VARIABLES))
def test_the_bundle_variable_defaults_to_the_lifecycle_default(variable: str) -> None:
    declared = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["variables"]
    expected = BUNDLE_VARIABLES[variable]
    assert _as_default(declared[variable]["default"], expected) == expected


# subcommand -> {flag dest: the default it must equal}
FLAG_DEFAULTS = {
    "validate": {"min_thresholds": D.as_key_values(D.MIN_THRESHOLDS), "primary_metric": D.PRIMARY_METRIC,
                 "max_tolerance": D.MAX_TOLERANCE, "clean_table": D.CLEAN_TABLE},
    "promote": {"min_thresholds": D.as_key_values(D.MIN_THRESHOLDS)},
    "monitor": {"psi_threshold": D.PSI_THRESHOLD, "null_rate_increase": D.NULL_RATE_INCREASE,
                "min_rows": D.MIN_ROWS_FOR_VERDICT, "psi_noise_quantile": D.PSI_NOISE_QUANTILE,
                "monitoring_table": D.MONITORING_TABLE, "predictions_table": D.PREDICTIONS_TABLE},
    "score": {"output_table": D.PREDICTIONS_TABLE, "rejected_table": D.SCORING_REJECTED_TABLE},
    "prepare": {"min_rows": D.MIN_CLEAN_ROWS, "holdout_fraction": D.HOLDOUT_FRACTION},
    "check-batch": {"max_rejected_fraction": D.MAX_REJECTED_FRACTION, "max_null_fraction": D.MAX_NULL_FRACTION},
    "approval-check": {"approval_required": D.APPROVAL_REQUIRED},
}


@pytest.mark.parametrize("command", sorted(FLAG_DEFAULTS))
def test_the_flags_default_to_the_lifecycle_defaults(command: str) -> None:
    parser = commands.subcommands()[command]
    found = {dest: parser.get_default(dest) for dest in FLAG_DEFAULTS[command]}
    assert found == FLAG_DEFAULTS[command]


def test_the_key_value_spelling_round_trips() -> None:
    assert gate_thresholds(D.as_key_values(D.MIN_THRESHOLDS), "") == D.MIN_THRESHOLDS
