"""TEST DOUBLE of MLflow's Unity Catalog registry client. It is NOT Unity Catalog.

No Unity Catalog is reachable from the tests, and the sqlite registry behaves differently where it
matters. This wraps a real ``MlflowClient`` on a sqlite registry and reproduces the restrictions
of MLflow 3.8.1's UC store (``mlflow/store/_unity_catalog/registry/rest_store.py``):

* ``search_model_versions`` returns ``ModelVersionSearch`` objects, whose ``.tags`` and
  ``.aliases`` raise (``mlflow/entities/model_registry/model_version_search.py``), in pages of
  ``page_size`` with a ``token`` for the next page;
* the stage methods (``transition_model_version_stage``, ``get_latest_versions``) raise
  "Method ... is unsupported for models in the Unity Catalog";
* a missing alias raises ``RESOURCE_DOES_NOT_EXIST`` (the exact UC error code for a missing alias
  is not verified here; ``registry.is_missing`` accepts it and ``NOT_FOUND``); every other error of
  the wrapped registry is re-raised as it is, never turned into "does not exist";
* an outage: with ``outage`` set to an exception, every call raises it (as a UC endpoint that
  answers 503 would, through MLflow's REST client);
* a registered model another identity created (names in ``foreign``): reading or deleting it
  raises ``PERMISSION_DENIED``, as Unity Catalog answers an identity without privileges on it
  (only an owner may delete a registered model);
* optional: a new version reports ``PENDING_REGISTRATION`` for its first ``pending_reads`` reads,
  or ``FAILED_REGISTRATION`` (the UC store itself says creation is READY at once; the wait is a guard).

Every call that changes the registry is recorded in ``writes``.
"""

from __future__ import annotations

import copy

from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_search import ModelVersionSearch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.store.entities.paged_list import PagedList


class UnityCatalogClientDouble:
    def __init__(self, real, *, page_size: int = 2, pending_reads: int = 0, fail_registration: bool = False):
        self._real = real
        self.page_size = page_size
        self.pending_reads = pending_reads
        self.fail_registration = fail_registration
        self.writes: list[tuple] = []
        self._reads: dict[tuple[str, str], int] = {}
        self.outage: Exception | None = None
        self.foreign: set[str] = set()

    def _up(self) -> None:
        """Every call fails while the registry is out."""
        if self.outage is not None:
            raise self.outage

    # ---- reads
    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        self._up()
        if order_by is not None:
            raise MlflowException("Argument 'order_by' is unsupported for models in the Unity Catalog.")
        everything = self._real.search_model_versions(filter_string)
        start = int(page_token or 0)
        page = everything[start:start + self.page_size]
        token = str(start + self.page_size) if start + self.page_size < len(everything) else None
        return PagedList([self._search_result(mv) for mv in page], token)

    @staticmethod
    def _search_result(mv: ModelVersion) -> ModelVersionSearch:
        return ModelVersionSearch(name=mv.name, version=mv.version, creation_timestamp=mv.creation_timestamp,
                                  run_id=mv.run_id, source=mv.source, status=mv.status)

    def get_model_version(self, name, version):
        self._up()
        mv = self._real.get_model_version(name, version)
        key = (name, str(version))
        self._reads[key] = self._reads.get(key, 0) + 1
        if self.fail_registration:
            return dc_replace_status(mv, "FAILED_REGISTRATION")
        if self._reads[key] <= self.pending_reads:
            return dc_replace_status(mv, "PENDING_REGISTRATION")
        return mv

    def get_model_version_by_alias(self, name, alias):
        self._up()
        try:
            return self._real.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            # The SQL store says "Registered model alias ... not found." as INVALID_PARAMETER_VALUE
            # (sqlalchemy_store.get_model_version_by_alias): that one case is UC's "does not exist".
            if exc.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and "not found" in str(exc):
                raise MlflowException(f"Alias {alias} not found for {name}.",
                                      error_code=RESOURCE_DOES_NOT_EXIST) from exc
            raise

    def _readable(self, name) -> None:
        if name in self.foreign:
            raise MlflowException(f"User does not have privileges on registered model '{name}'.",
                                  error_code=PERMISSION_DENIED)

    def get_registered_model(self, name):
        self._up()
        self._readable(name)
        return self._real.get_registered_model(name)

    def get_model_version_download_uri(self, name, version):
        self._up()
        return self._real.get_model_version_download_uri(name, version)

    # ---- writes
    def set_registered_model_alias(self, name, alias, version):
        self._up()
        self.writes.append(("set_alias", name, alias, str(version)))
        return self._real.set_registered_model_alias(name, alias, version)

    def set_model_version_tag(self, name, version, key, value):
        self._up()
        self.writes.append(("set_tag", name, str(version), key))
        return self._real.set_model_version_tag(name, version, key, value)

    def delete_model_version_tag(self, name, version, key):
        self._up()
        self.writes.append(("delete_tag", name, str(version), key))
        return self._real.delete_model_version_tag(name, version, key)

    def create_registered_model(self, name, tags=None, description=None):
        self._up()
        self.writes.append(("create_model", name))
        return self._real.create_registered_model(name, tags=tags, description=description)

    def update_registered_model(self, name, description=None):
        self._up()
        self._readable(name)
        self.writes.append(("update_model", name))
        return self._real.update_registered_model(name, description=description)

    def delete_registered_model(self, name):
        self._up()
        self._readable(name)
        self.writes.append(("delete_model", name))
        return self._real.delete_registered_model(name)

    def transition_model_version_stage(self, *args, **kwargs):
        self._up()
        raise MlflowException("Method 'transition_model_version_stage' is unsupported for models in the Unity "
                              "Catalog. We recommend using aliases instead of stages.")

    def get_latest_versions(self, *args, **kwargs):
        self._up()
        raise MlflowException("Method 'get_latest_versions' is unsupported for models in the Unity Catalog.")


def dc_replace_status(mv: ModelVersion, status: str) -> ModelVersion:
    changed = copy.copy(mv)
    changed._status = status  # ModelVersion has no public setter for the status
    return changed


__all__ = ["UnityCatalogClientDouble"]
