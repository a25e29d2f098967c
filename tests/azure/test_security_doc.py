"""SECURITY.md states the trust model of the configuration as it is: the identities, the groups and
the PR pipeline's connection it names are the ones databricks.yml and the pipelines use."""

from __future__ import annotations

import re

import yaml

from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

from .helpers import PIPELINES_DIR, REPO_ROOT, check_pipelines

DOC = REPO_ROOT / "SECURITY.md"


def test_it_says_how_to_report_a_problem_and_what_is_trusted():
    text = DOC.read_text()
    for heading in ("## Reporting a problem", "## Trust model", "### Who can write what",
                    "### What the release gate guarantees", "### What the model-loading checks refuse",
                    "### What the pull-request pipeline can reach"):
        assert heading in text, heading
    assert "not in a public issue" in text


def test_the_groups_it_names_are_the_bundle_defaults():
    text = DOC.read_text()
    variables = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["variables"]
    for name in ("workspace_readers_group", "uc_model_readers", "oncall_group"):
        assert f"`{variables[name]['default']}`" in text, name
    prod = resolve_bundle(REPO_ROOT, "prod")
    assert {"level": "CAN_MANAGE_RUN", "group_name": variables["oncall_group"]["default"]} in \
        prod.jobs["rollback"]["permissions"]


def test_the_rows_are_the_bundle_targets_and_the_pr_identity_is_the_pipelines():
    text = DOC.read_text()
    rows = re.findall(r"^\| `(\w+)`(?: \(pull requests\))? \|", text, re.M)
    assert rows == list(yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["targets"])
    assert f"(`{check_pipelines.PR_IDENTITY}`)" in text
    pr = (PIPELINES_DIR / "pr-validation.yml").read_text()
    assert f"group: {check_pipelines.PR_IDENTITY}" in pr and f"default: {check_pipelines.PR_IDENTITY}" in pr
