"""Errors a user can act on. The CLI prints their message (no traceback) and exits with their code."""

from __future__ import annotations

from spark_mlops import constants as c


class MlopsError(Exception):
    exit_code = c.EXIT_UNEXPECTED


class ConfigError(MlopsError):
    """A flag, variable or setting is wrong."""

    exit_code = c.EXIT_CONFIG


class DataContractError(MlopsError):
    """Input data breaks the data contract: missing column, wrong type, empty, corrupt, too few rows."""

    exit_code = c.EXIT_DATA_CONTRACT


class RegistryError(MlopsError):
    """The registry is not in the state the command needs (no challenger, no champion, …)."""

    exit_code = c.EXIT_REGISTRY


class PromotionRefused(MlopsError):
    """Promotion or rollback refused: not validated, failed validation, or the champion moved."""

    exit_code = c.EXIT_PROMOTION_REFUSED


class ValidationFailed(MlopsError):
    """The challenger failed its thresholds, its model contract, or the comparison with the champion."""

    exit_code = c.EXIT_REJECTED


class NoChampion(RegistryError):
    """Nothing to score with: the registered model has no @champion (yet)."""

    exit_code = c.EXIT_NO_CHAMPION


class UntrustedModel(MlopsError):
    """A version's files are not a model this project built and signed: a code folder, a stage
    class or file ``train`` does not write, no valid signature by a trusted key, or files changed
    since ``train``. Refused before anything is loaded."""

    exit_code = c.EXIT_UNTRUSTED_MODEL
