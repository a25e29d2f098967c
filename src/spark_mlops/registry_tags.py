"""Every name the model registry carries for this project: aliases, version tags, their values.

The only place these strings are written down: the lifecycle modules, the status view and the
tests import them from here. A tag is anything a person with write access to the registered model
can set by hand, so no tag here is trusted as evidence on its own (see docs/release-gate.md): a
verdict is the validation run a tag names, and a version's files are checked against the
signature ``train`` made (never against a tag).

Imports nothing, so :mod:`spark_mlops.constants` can re-export the aliases.
"""

from __future__ import annotations

# ---- aliases
CHALLENGER_ALIAS = "challenger"  # the candidate: set by train (or deploy-model), read by validate and promote
CHAMPION_ALIAS = "champion"  # the version that scores: moved only by promote and rollback

# ---- the verdict of validate (also written to the validation run, which is the evidence)
VALIDATION_STATUS = "validation_status"
VALIDATION_METRICS = "validation_metrics"
VALIDATION_CHAMPION_VERSION = "validation_champion_version"
VALIDATION_RUN_ID = "validation_run_id"
VALIDATED_AT = "validated_at"
VALIDATION_FAILURES = "validation_failures"
VALIDATION_MODEL_NAME = "validation_model_name"
VALIDATION_JOB_RUN_ID = "validation_job_run_id"
VALIDATION_THRESHOLDS = "validation_thresholds"
VALIDATION_TOLERANCE = "validation_tolerance"
VERDICT = (VALIDATION_STATUS, VALIDATION_METRICS, VALIDATION_CHAMPION_VERSION, VALIDATION_RUN_ID, VALIDATED_AT,
           VALIDATION_FAILURES, VALIDATION_MODEL_NAME, VALIDATION_JOB_RUN_ID, VALIDATION_THRESHOLDS,
           VALIDATION_TOLERANCE)

# values of VALIDATION_STATUS
PASSED = "passed"
FAILED = "failed"
REVOKED = "revoked"  # a rolled-back version: validate it again before it can return

# ---- a rejected release (record-rejection)
RELEASE_STATUS = "release_status"
REJECTED_AT = "rejected_at"
REJECTION_REASON = "rejection_reason"
RELEASE = (RELEASE_STATUS, REJECTED_AT, REJECTION_REASON)
REJECTED = "rejected"  # value of RELEASE_STATUS

# ---- promotion and rollback (the audit trail on the versions)
PROMOTED_AT = "promoted_at"
PROMOTED_BY = "promoted_by"
PROMOTED_BY_SOURCE = "promoted_by_source"  # where PROMOTED_BY came from (see identity.py)
PROMOTION_REASON = "promotion_reason"
PREVIOUS_CHAMPION_VERSION = "previous_champion_version"
ROLLED_BACK_AT = "rolled_back_at"
ROLLED_BACK_BY = "rolled_back_by"
ROLLED_BACK_TO = "rolled_back_to"
ROLLBACK_REASON = "rollback_reason"
RESTORED_AT = "restored_at"
RESTORED_BY = "restored_by"
RESTORED_FROM = "restored_from"
PROMOTION = (PROMOTED_AT, PROMOTED_BY, PROMOTED_BY_SOURCE, PROMOTION_REASON, PREVIOUS_CHAMPION_VERSION,
             ROLLED_BACK_AT, ROLLED_BACK_BY, ROLLED_BACK_TO, ROLLBACK_REASON, RESTORED_AT, RESTORED_BY,
             RESTORED_FROM)
NO_CHAMPION = "none"  # value of PREVIOUS_CHAMPION_VERSION and VALIDATION_CHAMPION_VERSION
UNSET = "-"  # a tag written with nothing to say (no job run, no reason, no failures)

# ---- lineage: where the version came from
TRAINING_RUN_ID = "training_run_id"
TRAINING_TRACKING_URI = "training_tracking_uri"
TRAINING_EXPERIMENT_ID = "training_experiment_id"
GIT_COMMIT = "git_commit"
BUNDLE_TARGET = "bundle_target"
JOB_RUN_ID = "job_run_id"
CLASSIFIER = "classifier"
CONTRACT = "contract"
MODEL_DIGEST = "model_digest"  # sha256 of the version's file manifest, recorded by train (see trust.py)
REGISTRY_COPY_RUN_ID = "registry_copy_run_id"
DEPLOYED_FROM = "deployed_from"  # models:/<source>/<version>: this version is deploy-model's copy of it
DEPLOYED_FROM_MODEL = "deployed_from_model"
DEPLOYED_FROM_VERSION = "deployed_from_version"
DEPLOYED_FROM_VALIDATION_RUN_ID = "deployed_from_validation_run_id"
DEPLOYED_BY_JOB_RUN_ID = "deployed_by_job_run_id"
DEPLOYED_BY = "deployed_by"
DEPLOYED_AT = "deployed_at"
LINEAGE = (TRAINING_RUN_ID, TRAINING_TRACKING_URI, TRAINING_EXPERIMENT_ID, GIT_COMMIT, BUNDLE_TARGET, JOB_RUN_ID,
           CLASSIFIER, CONTRACT, MODEL_DIGEST, REGISTRY_COPY_RUN_ID, DEPLOYED_FROM, DEPLOYED_FROM_MODEL,
           DEPLOYED_FROM_VERSION, DEPLOYED_FROM_VALIDATION_RUN_ID, DEPLOYED_BY_JOB_RUN_ID, DEPLOYED_BY, DEPLOYED_AT)

# ---- monitoring: the last batch monitored with this version
MONITORING_LAST_BATCH = "monitoring_last_batch"
MONITORING_LAST_VERDICT = "monitoring_last_verdict"
MONITORING_LAST_AT = "monitoring_last_at"
MONITORING = (MONITORING_LAST_BATCH, MONITORING_LAST_VERDICT, MONITORING_LAST_AT)

# ---- the deployment job (MLflow 3 deployment jobs, docs: mlflow/deployment-job; approval.py)
# The approval task's key, which is also the version tag it reads: the workspace's Approve button
# sets the tag named after the approval task to APPROVED and repairs the run. A key that starts
# with "approval" is what makes the workspace treat a task as the approval step.
APPROVAL_CHECK = "Approval_Check"
APPROVED = "Approved"  # the value the Approve button writes (the check compares case-insensitively)
APPROVED_BY = "approved_by"  # who set APPROVAL_CHECK with `spark-mlops approve` or automatically
APPROVED_AT = "approved_at"
DEPLOYMENT_JOB_RUN_ID = "deployment_job_run_id"  # the deployment job run that handles this version
APPROVAL = (APPROVAL_CHECK, APPROVED_BY, APPROVED_AT, DEPLOYMENT_JOB_RUN_ID)
AUTOMATIC = "automatic"  # APPROVED_BY when the target approves without a person (approval_required false)
# The registered model's link to its deployment job. On Unity Catalog it is the registered model's
# own field ``deployment_job_id``; MLflow's sqlite store drops that field (and update_registered_model
# there rewrites the description), so locally the link is this registered-model tag.
DEPLOYMENT_JOB_ID = "deployment_job_id"
# A version's place in the deployment job's story (status), latest first in precedence.
STATE_ROLLED_BACK = "rolled back"
STATE_DEPLOYED = "deployed"
STATE_REJECTED = "rejected"
STATE_APPROVED = "approved"
STATE_PENDING_APPROVAL = "pending approval"
STATE_EVALUATING = "evaluating"

# Tags of a version that describe its life in its own registered model. ``copy_model_version``
# copies every tag (measured on MLflow 3.8.1), so deploy-model clears these on the copy: an
# approval given in staging is not an approval in prod.
SOURCE_ONLY = (*VERDICT, *RELEASE, *PROMOTION, *MONITORING, *APPROVAL)

# ---- the alias lock: a registered model of this name exists while a command moves an alias
LOCK_SUFFIX = "__alias_lock"

# ---- the validation run a verdict names (its tags and params are the evidence promote re-reads)
RUN_STEP = "step"  # run tag: which step made the run
STEP_VALIDATE = "validate"
STEP_CHECK_BATCH = "check-batch"  # a passed batch check, for score of the same job run (batch_check.py)
CHECKED_INPUT = "checked_input"  # run tag: the checked input's identity (batch_check.input_identity)
CHECKED_CONTRACT = "checked_contract"  # run tag: the digest of the contract it was checked against
RUN_VERDICT = "verdict"  # run tag: PASSED or FAILED
RUN_MODEL_NAME = "model_name"  # run param
RUN_MODEL_VERSION = "model_version"  # run param (and tag)
RUN_CHAMPION_VERSION = "champion_version"  # run param: the champion the verdict was reached against
RUN_METRIC_PREFIX = "challenger_"  # run metrics: challenger_<metric>
