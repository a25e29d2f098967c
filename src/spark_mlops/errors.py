"""Errors a user can act on. The CLI prints their message (no traceback) and exits with their code."""

from __future__ import annotations


class MlopsError(Exception):
    exit_code = 1


class ConfigError(MlopsError):
    """A flag, variable or setting is wrong."""

    exit_code = 2


class DataContractError(MlopsError):
    """Input data breaks the data contract: missing column, wrong type, empty, corrupt, too few rows."""

    exit_code = 3


class RegistryError(MlopsError):
    """The registry is not in the state the command needs (no challenger, no champion, …)."""

    exit_code = 4


class PromotionRefused(MlopsError):
    """Promotion or rollback refused: not validated, failed validation, or the champion moved."""

    exit_code = 5


class ValidationFailed(MlopsError):
    """The challenger failed its thresholds, its model contract, or the comparison with the champion."""

    exit_code = 6
