"""Names and numbers that several layers share: exit codes, aliases, entry points, jobs, tasks.

Imports nothing but :mod:`spark_mlops.registry_tags` (which imports nothing), so the CLI, the
bundle validator, the local runner and the lifecycle modules can all depend on it without
depending on each other (or on Spark and MLflow).
"""

from __future__ import annotations

from spark_mlops.registry_tags import CHALLENGER_ALIAS, CHAMPION_ALIAS  # noqa: F401 (defined there, once)

# ---- exit codes (documented in the README's "Exit codes" table)
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2  # a flag, name, variable or setting is wrong
EXIT_DATA_CONTRACT = 3  # input data breaks the data contract
EXIT_REGISTRY = 4  # the registry is not in the state the command needs, or failed
EXIT_PROMOTION_REFUSED = 5  # promotion, rollback or deployment refused
EXIT_REJECTED = 6  # validation failed: the candidate was rejected
EXIT_DRIFT = 7  # monitoring found drift (the drift gate's signal)
EXIT_NO_CHAMPION = 8  # nothing to score with: the model has no @champion yet
EXIT_UNTRUSTED_MODEL = 9  # a version's files are not a model this project built: refused before loading

# ---- the wheel: package and entry-point group ([project.entry-points."spark_mlops.tasks"])
PACKAGE_NAME = "spark_mlops"
ENTRY_POINT_GROUP = "spark_mlops.tasks"

# ---- bundle targets
REQUIRED_TARGETS = ("dev", "test", "staging", "prod")
PRODUCTION_TARGETS = ("staging", "prod")
NO_ACTIVE_TRIGGER_TARGETS = ("dev", "test")
