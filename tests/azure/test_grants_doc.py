"""docs/azure-devops.md documents a Unity Catalog grant for every UC object the bundle creates or
uses, per target and identity, computed from the bundle itself, as the Databricks CLI resolves it (spark_mlops_dev.bundle.databricks_cli):

* a schema the bundle creates (resources.schemas) -> CREATE SCHEMA + USE CATALOG on its catalog;
  what the bundle creates inside it, its deployer owns;
* a registered model / volume the bundle creates in a schema it does not create -> USE CATALOG,
  USE SCHEMA + CREATE MODEL / CREATE VOLUME on that schema;
* tables the jobs write (wheel task parameters ``*-table``, in the task's catalog/schema) ->
  USE SCHEMA + CREATE TABLE on the schema;
* input files on a volume (``/Volumes/c/s/v/...`` in job parameters) -> READ VOLUME on it;
* prod's model deployment reads the staging model -> the prod service principal has exactly
  USE CATALOG on staging's catalog, USE SCHEMA on its schema and EXECUTE on the model, nothing more;
* pull-request code runs as the PR service principal (target ``test``), which has exactly what the
  per-run ``test_*`` schema and the raw inputs need, nothing on staging's model or tables.

Names with a placeholder (``<suffix>``, ``${workspace.current_user.short_name}``) match any value;
the fake workspace's user (who deploys dev locally) stands for any developer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

from .helpers import REPO_ROOT

DOC = REPO_ROOT / "docs" / "azure-devops.md"
# Who deploys and runs each target (docs/azure-devops.md, "Identities").
PRINCIPALS = {"dev": "<developers>", "test": "<pr-sp>", "staging": "<staging-sp>", "prod": "<prod-sp>"}

Grant = tuple[str, str, str]  # (principal, securable type, securable name)


def _norm_placeholders(name: str) -> str:
    """Placeholders (<...>, ${...}) and the deployment suffix's default compare equal to anything."""
    name = re.sub(r"<[^>]+>|\$\{[^}]+\}", "*", name.strip().strip("`"))
    return name


def documented_grants(text: str) -> dict[Grant, set[str]]:
    """Rows ``| `<principal>` | PRIV, PRIV | TYPE | `name` |`` of the doc's grant tables."""
    grants: dict[Grant, set[str]] = defaultdict(set)
    row = re.compile(r"^\|\s*`(<[^>]+>)`\s*\|\s*([A-Z ,]+?)\s*\|\s*(CATALOG|SCHEMA|VOLUME|MODEL)\s*\|\s*`([^`]+)`\s*\|")
    for line in text.splitlines():
        m = row.match(line)
        if m:
            principal, privileges, kind, name = m.groups()
            grants[(principal, kind, _norm_placeholders(name))] |= {p.strip() for p in privileges.split(",") if p.strip()}
    return grants


def required_grants(root: Path, target: str, *, suffix_wildcard: bool = True) -> dict[Grant, set[str]]:
    # The target as deployed: a schema the bundle creates has the name the CLI gives it
    # (test_<suffix>_spark_mlops), so reading staging.spark_mlops.raw is not mistaken for reading
    # a schema of one's own.
    bundle = resolve_bundle(root, target)
    short = str(((bundle.config.get("workspace") or {}).get("current_user") or {}).get("short_name") or "")
    developer = re.compile(rf"(?<=_){re.escape(short)}(?=_)") if target == "dev" and short else None

    def _norm(name: str) -> str:  # dev's names carry the local user's short name: any developer's
        return _norm_placeholders(developer.sub("*", name) if developer else name)

    who = PRINCIPALS[target]
    resources = bundle.config.get("resources") or {}
    need: dict[Grant, set[str]] = defaultdict(set)
    created_schemas = {(s["catalog_name"], s["name"]) for s in (resources.get("schemas") or {}).values()}

    def schema_level(catalog: str, schema: str, *privileges: str) -> None:
        need[(who, "CATALOG", _norm(catalog))].add("USE CATALOG")
        if (catalog, schema) in created_schemas:
            return  # the deployer created it, so owns it and everything it creates in it
        need[(who, "SCHEMA", _norm(f"{catalog}.{schema}"))] |= {"USE SCHEMA", *privileges}

    for catalog, _ in created_schemas:
        need[(who, "CATALOG", _norm(catalog))] |= {"USE CATALOG", "CREATE SCHEMA"}
    for model in (resources.get("registered_models") or {}).values():
        schema_level(model["catalog_name"], model["schema_name"], "CREATE MODEL")
    for volume in (resources.get("volumes") or {}).values():
        schema_level(volume["catalog_name"], volume["schema_name"], "CREATE VOLUME")
    volumes = {(v["catalog_name"], v["schema_name"], v["name"]) for v in (resources.get("volumes") or {}).values()}

    def read_paths(value: object) -> None:
        for c, s, v in re.findall(r"/Volumes/([^/\s]+)/([^/\s]+)/([^/\s]+)/", str(value)):
            if (c, s, v) not in volumes and (c, s) not in created_schemas:
                schema_level(c, s)
                need[(who, "VOLUME", _norm(f"{c}.{s}.{v}"))].add("READ VOLUME")

    for job in (resources.get("jobs") or {}).values():
        for param in job.get("parameters") or []:
            read_paths(param.get("default"))
        for task in job.get("tasks") or []:
            named = (task.get("python_wheel_task") or {}).get("named_parameters") or {}
            read_paths(" ".join(str(v) for v in named.values()))
            for key, value in named.items():
                if key.endswith("-table") and "{{" not in str(value):
                    parts = str(value).split(".")
                    catalog, schema = parts[:2] if len(parts) == 3 else (named.get("catalog"), named.get("schema"))
                    schema_level(str(catalog), str(schema), "CREATE TABLE")
                if key == "source-model-name":
                    c, s, m = str(value).split(".")
                    schema_level(c, s)
                    need[(who, "MODEL", _norm(value))].add("EXECUTE")
    return need


def _missing(required: dict[Grant, set[str]], documented: dict[Grant, set[str]]) -> list[str]:
    return [f"{who} needs {', '.join(sorted(privs - documented.get((who, kind, name), set())))} ON {kind} {name}"
            for (who, kind, name), privs in sorted(required.items())
            if privs - documented.get((who, kind, name), set())]


@pytest.mark.parametrize("target", list(PRINCIPALS))
def test_every_uc_object_of_the_bundle_has_a_documented_grant(target: str) -> None:
    missing = _missing(required_grants(REPO_ROOT, target), documented_grants(DOC.read_text()))
    assert not missing, "docs/azure-devops.md lacks grants:\n" + "\n".join(missing)


def _staging_model() -> str:
    model = resolve_bundle(REPO_ROOT, "staging").config["resources"]["registered_models"]["model"]
    return f"{model['catalog_name']}.{model['schema_name']}.{model['name']}"


def _prod_on_staging(text: str) -> dict[Grant, set[str]]:
    catalog = _staging_model().split(".")[0]
    return {key: privs for key, privs in documented_grants(text).items()
            if key[0] == "<prod-sp>" and key[2].split(".")[0] == catalog}


def _read_only_staging_model() -> dict[Grant, set[str]]:
    catalog, schema, _ = _staging_model().split(".")
    return {
        ("<prod-sp>", "CATALOG", catalog): {"USE CATALOG"},
        ("<prod-sp>", "SCHEMA", f"{catalog}.{schema}"): {"USE SCHEMA"},
        ("<prod-sp>", "MODEL", _staging_model()): {"EXECUTE"},
    }


def test_prod_reads_the_staging_model_with_exactly_three_grants() -> None:
    assert _prod_on_staging(DOC.read_text()) == _read_only_staging_model()


def test_prod_model_deployment_reads_the_documented_staging_model() -> None:
    """When the bundle names the source model of prod's model deployment, it is staging's model."""
    jobs = resolve_bundle(REPO_ROOT, "prod").config.get("resources", {}).get("jobs", {})
    sources = {str(named["source-model-name"])
               for job in jobs.values() for task in job.get("tasks") or []
               for named in [(task.get("python_wheel_task") or {}).get("named_parameters") or {}]
               if "source-model-name" in named}
    assert sources == {_staging_model()}


# mutation tests: the check fails when the doc or the bundle changes


def _pr_grants(text: str) -> dict[Grant, set[str]]:
    return {key: privs for key, privs in documented_grants(text).items() if key[0] == "<pr-sp>"}


def test_pull_requests_reach_only_their_own_schemas_and_the_raw_inputs() -> None:
    """The PR service principal (issue 22): exactly what `bundle deploy -t test` and its runs need,
    which is also everything the doc gives it: no privilege on staging's model or tables."""
    catalog, schema, _ = _staging_model().split(".")
    expected = {
        ("<pr-sp>", "CATALOG", catalog): {"USE CATALOG", "CREATE SCHEMA"},
        ("<pr-sp>", "SCHEMA", f"{catalog}.{schema}"): {"USE SCHEMA"},
        ("<pr-sp>", "VOLUME", f"{catalog}.{schema}.raw"): {"READ VOLUME"},
    }
    assert _pr_grants(DOC.read_text()) == expected
    assert dict(required_grants(REPO_ROOT, "test")) == expected


def test_the_staging_service_principal_needs_no_schema_creation() -> None:
    """It deploys only staging (into the platform schema); PR runs create the test_* schemas."""
    catalog = _staging_model().split(".")[0]
    assert documented_grants(DOC.read_text())[("<staging-sp>", "CATALOG", catalog)] == {"USE CATALOG"}
    assert required_grants(REPO_ROOT, "staging")[("<staging-sp>", "CATALOG", catalog)] == {"USE CATALOG"}


def test_a_removed_grant_is_caught() -> None:
    text = DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `<pr-sp>`") and "CREATE SCHEMA" in line)
    missing = _missing(required_grants(REPO_ROOT, "test"), documented_grants(text.replace(row, "")))
    assert "<pr-sp> needs CREATE SCHEMA, USE CATALOG ON CATALOG staging" in missing


def test_a_new_table_the_jobs_write_is_caught(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "bundle"
    shutil.copytree(REPO_ROOT / "resources", root / "resources")
    shutil.copy2(REPO_ROOT / "databricks.yml", root / "databricks.yml")
    path = root / "resources" / "training.job.yml"
    text = path.read_text()
    assert "quarantine-table: ${var.quarantine_table}" in text
    path.write_text(text.replace("quarantine-table: ${var.quarantine_table}",
                                 "quarantine-table: audit.spark_mlops.quarantine"))
    missing = _missing(required_grants(root, "prod"), documented_grants(DOC.read_text()))
    assert "<prod-sp> needs CREATE TABLE, USE SCHEMA ON SCHEMA audit.spark_mlops" in missing


def test_an_extra_grant_for_prod_on_staging_is_caught() -> None:
    text = DOC.read_text() + "\n| `<prod-sp>` | SELECT | SCHEMA | `staging.spark_mlops` |\n"
    assert _prod_on_staging(text) != _read_only_staging_model()
    text = DOC.read_text() + "\n| `<prod-sp>` | READ VOLUME | VOLUME | `staging.spark_mlops.raw` |\n"
    assert _prod_on_staging(text) != _read_only_staging_model()
