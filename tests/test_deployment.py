"""Deploy-the-model mode: the staging model's @champion is copied into the prod model and must pass
prod's own gate. Two registered models in one local registry stand for the two Unity Catalog
catalogs (``staging.<schema>.<model>`` and ``prod.<schema>.<model>``)."""

from __future__ import annotations

import uuid

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.constants import EXIT_PROMOTION_REFUSED, EXIT_REGISTRY, EXIT_REJECTED
from tests.conftest import released, run_cli


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"staging.ml.m_{suffix}", f"prod.ml.m_{suffix}"


def deploy(args_prod: tuple, source: str, *extra: str) -> int:
    return run_cli("deploy-model", *args_prod, "--source-model-name", source, *extra)


def test_deploy_copies_the_staging_champion_by_number_with_lineage_and_no_verdict(trained, capsys):
    staging_name, prod_name = names()
    staging, _ = released(trained, "1", "1", name=staging_name)  # v1 champion, v2 newer but unvalidated
    prod, prod_args = trained.fresh(name=prod_name)
    capsys.readouterr()
    assert deploy((*prod_args, "--job-run-id", "900"), staging_name) == 0
    printed = capsys.readouterr()
    assert f"copied models:/{staging_name}/1 to {prod_name} v1" in printed.out
    assert "Copied version" not in printed.err  # MLflow's own print of the same event, held back
    tags = trained.tags(prod, "1")
    assert tags["deployed_from"] == f"models:/{staging_name}/1"  # the champion, not the latest (v2)
    assert tags["deployed_from_validation_run_id"] == trained.tags(staging, "1")["validation_run_id"]
    assert tags["deployed_by_job_run_id"] == "900"
    assert tags["training_run_id"] == trained.tags(staging, "1")["training_run_id"]
    # The staging verdict and promotion do not travel: prod must decide for itself.
    assert not {"validation_status", "promoted_at", "previous_champion_version"} & set(tags)
    assert registry.alias_version(prod, "challenger") == "1"
    assert trained.champion(prod) is None


def test_deploying_the_same_version_twice_creates_no_second_copy(trained, capsys):
    staging_name, prod_name = names()
    released(trained, "1", name=staging_name)
    prod, prod_args = trained.fresh(name=prod_name)
    assert deploy(prod_args, staging_name) == 0
    assert deploy(prod_args, staging_name) == 0
    assert f"models:/{staging_name}/1 is already {prod_name} v1; nothing copied" in capsys.readouterr().out
    assert [r.version for r in registry.versions(prod)] == ["1"]


def test_an_unvalidated_or_revoked_source_is_refused_and_nothing_is_copied(trained, capsys):
    staging_name, prod_name = names()
    staging, staging_args = trained.fresh("1", name=staging_name)
    trained.client.set_registered_model_alias(staging_name, "champion", "1")  # set by hand, never validated
    prod, prod_args = trained.fresh(name=prod_name)
    assert deploy(prod_args, staging_name) == EXIT_PROMOTION_REFUSED
    assert "has no passed validation verdict (status none); nothing was copied" in capsys.readouterr().err

    assert run_cli("validate", *staging_args, "--version", "1") == 0
    registry.set_tags(staging, "1", {"validation_status": "revoked", "rollback_reason": "bad outputs"})
    assert deploy(prod_args, staging_name) == EXIT_PROMOTION_REFUSED
    assert "validation was revoked by a rollback (bad outputs)" in capsys.readouterr().err
    assert registry.versions(prod) == []

    assert deploy(prod_args, f"staging.ml.missing_{uuid.uuid4().hex[:6]}") == EXIT_REGISTRY


def test_the_copy_passes_prods_own_gate_and_becomes_prods_champion(trained):
    staging_name, prod_name = names()
    released(trained, "1", name=staging_name)
    prod, prod_args = trained.fresh(name=prod_name)
    assert deploy((*prod_args, "--job-run-id", "77"), staging_name) == 0
    assert run_cli("validate", *prod_args, "--job-run-id", "77") == 0
    assert run_cli("promote", *prod_args, "--job-run-id", "77") == 0
    assert trained.champion(prod) == "1"
    assert trained.tags(prod, "1")["validation_model_name"] == prod_name


def test_a_prod_gate_rejection_leaves_prods_champion_and_fails(trained, capsys):
    staging_name, prod_name = names()
    staging, staging_args = released(trained, "1", "1", name=staging_name)
    prod, prod_args = trained.fresh(name=prod_name)
    assert deploy(prod_args, staging_name) == 0
    assert run_cli("validate", *prod_args) == 0 and run_cli("promote", *prod_args) == 0  # prod champion v1
    # staging releases v2; prod demands more than it delivers
    assert run_cli("validate", *staging_args, "--version", "2") == 0
    assert run_cli("promote", *staging_args, "--version", "2") == 0
    assert deploy((*prod_args, "--job-run-id", "5"), staging_name) == 0  # prod v2 @challenger
    assert run_cli("validate", *prod_args, "--job-run-id", "5", "--thresholds", "areaUnderROC=0.999") == \
        EXIT_REJECTED
    assert run_cli("record-rejection", *prod_args, "--job-run-id", "5") == 0
    assert "(@champion stays 1)" in capsys.readouterr().out
    assert trained.champion(prod) == "1"
    assert trained.tags(prod, "2")["release_status"] == "rejected"


def test_compare_and_set_when_prods_champion_moves_during_the_deployment(trained, capsys):
    staging_name, prod_name = names()
    released(trained, "1", name=staging_name)
    prod, prod_args = trained.fresh("1", name=prod_name)  # prod v1: an existing, unrelated version
    assert deploy((*prod_args, "--job-run-id", "8"), staging_name) == 0  # prod v2
    assert run_cli("validate", *prod_args, "--job-run-id", "8") == 0  # against "no champion"
    trained.client.set_registered_model_alias(prod_name, "champion", "1")  # someone else moved it
    assert run_cli("promote", *prod_args, "--job-run-id", "8") == EXIT_PROMOTION_REFUSED
    assert "validated against @champion none, but @champion is now 1" in capsys.readouterr().err
    assert trained.champion(prod) == "1"


def test_a_hand_written_staging_verdict_is_refused_and_nothing_is_copied(trained, capsys):
    staging_name, prod_name = names()
    staging, _ = trained.fresh("1", name=staging_name)
    trained.client.set_registered_model_alias(staging_name, "champion", "1")  # moved by hand, never validated
    registry.set_tags(staging, "1", {rt.VALIDATION_STATUS: rt.PASSED, rt.VALIDATION_MODEL_NAME: staging_name,
                                     rt.VALIDATION_METRICS: {"areaUnderROC": 0.99}})
    prod, prod_args = trained.fresh(name=prod_name)
    capsys.readouterr()
    assert deploy(prod_args, staging_name) == EXIT_PROMOTION_REFUSED
    assert "verdict names no validation run: it was not reached by validate; nothing was copied" in \
        capsys.readouterr().err
    assert registry.versions(prod) == []
