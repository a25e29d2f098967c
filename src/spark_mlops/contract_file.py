"""Data contract files: Open Data Contract Standard (ODCS) v3 documents, read and written.

A contract is an ODCS document (read with the standard's own pydantic model, the
``open-data-contract-standard`` package) with one schema object, the dataset, whose properties are
its columns. The standard says a column's type (``logicalType``, ``physicalType``), whether it may
be empty (``required``), which columns are the key (``primaryKey``), value ranges
(``logicalTypeOptions.minimum``/``maximum``) and allowed values (``enum``). What it has no field
for is one of the custom properties in :data:`CONTRACT_PROPERTIES` and :data:`COLUMN_PROPERTIES`
(docs/contracts.md explains each once).

A contract that says something the lifecycle would not check is refused, not half-obeyed: one
line, naming the file, the field and what is wrong (a :class:`ConfigError`, exit 2). No Spark
here: the lifecycle's transformations live in :mod:`spark_mlops.contract`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from spark_mlops.errors import ConfigError

PACKAGED_CONTRACT = "pima_diabetes.yml"
# The ODCS versions whose documents the standard's 3.2 model reads (its JSON schema's apiVersion).
API_VERSIONS = ("v3.2.0", "v3.1.0", "v3.0.2", "v3.0.1", "v3.0.0")
API_VERSION = "v3.2.0"  # what `contract draft` and `contract convert` write
VENDOR = "spark-mlops"  # a custom property with another vendor is another tool's: left alone

# Our additions to ODCS, as customProperties (name -> what it means). Named here once.
CONTRACT_PROPERTIES = {
    "modelName": "the registered model's name when no --model-name is given "
                 "(default: the contract's name + '_classifier')",
    "requireKeyColumns": "false: an input without the key columns is accepted, each row gets a derived row id "
                         "(default true)",
    "rowIdColumn": "the name of that derived row id column (default row_id)",
    "passThroughColumns": "columns copied from the input into the predictions (default: none when the input has "
                          "its keys, every feature when it has not)",
}
COLUMN_PROPERTIES = {
    "mlRole": "label (exactly one column: the class to predict), feature (the default for a column that is not "
              "a key) or ignored (documented, not read)",
    "missingValues": "values that mean 'not measured' (e.g. [0]): they become null and the model imputes them",
}
ROLES = ("label", "feature", "ignored")
# logicalTypeOptions the lifecycle checks; `format` only describes. Any other is refused.
_CHECKED_OPTIONS = {"minimum", "maximum"}
_DESCRIPTIVE_OPTIONS = {"format"}
# ODCS logicalType and physicalType -> the contract type of a feature (spark_mlops.contract._TYPES).
_NUMBER_PHYSICAL = {None, "double", "float", "real", "decimal", "numeric"}
_INTEGER_PHYSICAL = {None: "int", "int": "int", "integer": "int", "smallint": "int", "tinyint": "int",
                     "bigint": "long", "long": "long"}
DEFAULT_LABEL_VALUES = (0, 1)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str = "double"
    min: float | None = None
    max: float | None = None
    missing_values: tuple[float, ...] = ()
    nullable: bool = True


@dataclass(frozen=True)
class DataContract:
    name: str
    label: str
    features: tuple[FeatureSpec, ...]
    label_values: tuple[int, ...] = DEFAULT_LABEL_VALUES
    key_columns: tuple[str, ...] = field(default_factory=tuple)
    # False: an input without the key columns is accepted and each row gets a derived row id.
    require_key_columns: bool = True
    row_id_column: str = "row_id"
    # Columns copied from the input into the predictions so they can be joined back; None means
    # "none when the input has keys, the contract's features when it has not".
    pass_through_columns: tuple[str, ...] | None = None
    # The registered model's short name when none is given (customProperties modelName).
    declared_model_name: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def pass_through(self, identity: tuple[str, ...]) -> list[str]:
        """The input columns the predictions carry besides ``identity`` (keys or row id)."""
        if self.pass_through_columns is not None:
            return [c for c in self.pass_through_columns if c not in identity]
        return [] if identity == tuple(self.key_columns) and identity else self.feature_names

    @property
    def positive_label(self) -> int:
        return max(self.label_values)

    @property
    def model_name(self) -> str:
        """The registered model's short name this contract trains: its modelName, else its name
        made a Unity Catalog identifier, + ``_classifier``."""
        if self.declared_model_name:
            return self.declared_model_name
        return (re.sub(r"[^0-9A-Za-z_]+", "_", self.name).strip("_").lower() or "model") + "_classifier"


# ---------------------------------------------------------------- reading


def load_contract(path: str | None = None) -> DataContract:
    """Read a contract file; ``None`` reads the packaged example contract."""
    if path is None:
        text = resources.files("spark_mlops.contracts").joinpath(PACKAGED_CONTRACT).read_text()
        origin = f"packaged contract {PACKAGED_CONTRACT}"
    else:
        if not Path(path).is_file():
            raise ConfigError(f"data contract {path}: no such file")
        text, origin = Path(path).read_text(encoding="utf-8"), path
    return parse_contract(text, origin)


def parse_contract(text: str, origin: str) -> DataContract:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise ConfigError(f"data contract {origin}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return contract_from_document(raw, origin)


def contract_from_document(raw: Any, origin: str) -> DataContract:
    """The contract an ODCS document (parsed YAML) describes; a ConfigError naming every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"data contract {origin}: expected an ODCS document (a mapping), found {type(raw).__name__}")
    if "apiVersion" not in raw and "features" in raw:
        raise ConfigError(
            f"data contract {origin}: the old spark-mlops format (label:, features:) is no longer read; "
            f"convert it to ODCS once: spark-mlops contract convert {origin} --output NEW.yml"
        )
    reader = _Reader(origin)
    contract = reader.read(raw)
    if reader.problems:
        raise ConfigError(f"data contract {origin}: " + "; ".join(reader.problems))
    assert contract is not None
    return contract


def _odcs():
    from open_data_contract_standard import model  # pydantic: imported when a contract is read

    return model


class _Reader:
    """Collects every problem of one document as ``field: what is wrong``."""

    def __init__(self, origin: str):
        self.origin = origin
        self.problems: list[str] = []

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def read(self, raw: dict) -> DataContract | None:
        from pydantic import ValidationError

        odcs = _odcs()
        try:
            document = odcs.OpenDataContractStandard.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                self.problem(_path(error["loc"]), _pydantic_message(error))
            return None
        for key in ("apiVersion", "kind", "id", "version"):  # required by the standard's JSON schema
            if raw.get(key) in (None, ""):
                self.problem(key, "missing (ODCS requires apiVersion, kind, id and version)")
        if raw.get("apiVersion") not in (None, "") and document.apiVersion not in API_VERSIONS:
            self.problem("apiVersion", f"{document.apiVersion!r} is not an ODCS v3 version ({', '.join(API_VERSIONS)})")
        if raw.get("kind") not in (None, "") and document.kind != "DataContract":
            self.problem("kind", f"{document.kind!r}: expected DataContract")
        custom = self.custom(document.customProperties, "customProperties", CONTRACT_PROPERTIES)
        objects = raw.get("schema") or []
        if len(objects) != 1:
            self.problem("schema", f"expected one schema object (the dataset), found {len(objects)}")
            return None
        self.unknown_fields(objects[0], odcs.SchemaObject, "schema[0]")
        columns = objects[0].get("properties") or []
        if not columns:
            self.problem("schema[0].properties", "no columns")
            return None
        return self.dataset(document.name or document.id or "", document.schema_[0].properties, columns, custom)

    def dataset(self, name: str, properties: list, raw_columns: list, custom: dict) -> DataContract | None:
        odcs = _odcs()
        label, label_values, keys, features = None, DEFAULT_LABEL_VALUES, [], []
        seen: set[str] = set()
        for i, (prop, raw) in enumerate(zip(properties, raw_columns, strict=True)):
            where = f"schema[0].properties[{i}]" + (f" ({prop.name})" if prop.name else "")
            self.unknown_fields(raw, odcs.SchemaProperty, where)
            if not prop.name:
                self.problem(where, "no name")
                continue
            if prop.name.lower() in seen:
                self.problem(where, f"column {prop.name} is listed twice")
            seen.add(prop.name.lower())
            extra = self.custom(prop.customProperties, f"{where}.customProperties", COLUMN_PROPERTIES)
            role = extra.get("mlRole", "feature")
            if role not in ROLES:
                self.problem(f"{where}.customProperties.mlRole", f"{role!r}: expected one of {', '.join(ROLES)}")
                continue
            if role == "ignored":
                continue
            self.options(prop, where)
            if prop.primaryKey:
                if role == "label":
                    self.problem(where, "the label cannot be a primary key")
                keys.append((prop.primaryKeyPosition if (prop.primaryKeyPosition or -1) > 0 else 1_000 + i, prop.name))
                continue
            if prop.unique:
                self.problem(f"{where}.unique", "checked only on primaryKey columns; remove it or make the column a key")
            if role == "label":
                if label is not None:
                    self.problem(where, f"a second label (the first is {label}); exactly one column has mlRole label")
                    continue
                label, label_values = prop.name, self.label_values(prop, where)
                continue
            feature = self.feature(prop, where, extra)
            if feature is not None:
                features.append(feature)
        if label is None:
            self.problem("schema[0].properties", "no label: mark the column to predict with customProperties "
                                                 "[{property: mlRole, value: label}]")
        if not features and label is not None:
            self.problem("schema[0].properties", "no feature column")
        columns = {p.name for p in properties if p.name}
        pass_through = custom.get("passThroughColumns")
        if pass_through is not None:
            if not isinstance(pass_through, list) or not all(isinstance(c, str) for c in pass_through):
                self.problem("customProperties.passThroughColumns", f"{pass_through!r}: expected a list of column names")
                pass_through = None
            else:
                unknown = [c for c in pass_through if c not in columns]
                if unknown:
                    self.problem("customProperties.passThroughColumns", f"{unknown} are not columns of the contract")
        require_keys = custom.get("requireKeyColumns", True)
        if not isinstance(require_keys, bool):
            self.problem("customProperties.requireKeyColumns", f"{require_keys!r}: expected true or false")
        row_id = custom.get("rowIdColumn", "row_id")
        model_name = custom.get("modelName")
        for prop_name, value in (("rowIdColumn", row_id), ("modelName", model_name)):
            if value is not None and not _identifier(value):
                self.problem(f"customProperties.{prop_name}", f"{value!r}: expected a name of letters, digits and "
                                                              "underscores")
        if not name:
            self.problem("name", "missing (and no id): the contract needs a name")
        if self.problems or label is None:
            return None
        return DataContract(
            name=name, label=label, features=tuple(features), label_values=label_values,
            key_columns=tuple(k for _, k in sorted(keys)), require_key_columns=bool(require_keys),
            row_id_column=str(row_id), pass_through_columns=None if pass_through is None else tuple(pass_through),
            declared_model_name=model_name,
        )

    def feature(self, prop, where: str, extra: dict) -> FeatureSpec | None:
        kind = self.feature_type(prop, where)
        options = prop.logicalTypeOptions or {}
        bounds = {}
        for option in ("minimum", "maximum"):
            value = options.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                self.problem(f"{where}.logicalTypeOptions.{option}", f"{value!r} is not a number")
                value = None
            bounds[option] = value
        if None not in bounds.values() and bounds["minimum"] > bounds["maximum"]:
            self.problem(f"{where}.logicalTypeOptions", f"minimum {bounds['minimum']} > maximum {bounds['maximum']}")
        missing = extra.get("missingValues", [])
        if not isinstance(missing, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in missing):
            self.problem(f"{where}.customProperties.missingValues", f"{missing!r}: expected a list of numbers")
            missing = []
        if prop.enum:
            self.problem(f"{where}.enum", "allowed values are checked only on the label")
        if kind is None:
            return None
        return FeatureSpec(prop.name, kind, bounds["minimum"], bounds["maximum"], tuple(missing),
                           nullable=not prop.required)

    def feature_type(self, prop, where: str) -> str | None:
        logical = prop.logicalType
        physical = (prop.physicalType or "").lower() or None
        if logical == "number" and physical in _NUMBER_PHYSICAL | {"int", "integer", "bigint", "long"}:
            return "double"
        if logical == "integer" and physical in _INTEGER_PHYSICAL:
            return _INTEGER_PHYSICAL[physical]
        if logical in ("number", "integer"):
            self.problem(f"{where}.physicalType", f"{prop.physicalType!r} does not hold a {logical}")
        elif logical is None:
            self.problem(f"{where}.logicalType", "missing: a feature is a number or an integer")
        else:
            self.problem(f"{where}.logicalType", f"{logical!r}: a feature is a number or an integer "
                                                 "(mark other columns mlRole: ignored)")
        return None

    def label_values(self, prop, where: str) -> tuple[int, ...]:
        if prop.logicalType != "integer":
            self.problem(f"{where}.logicalType", f"{prop.logicalType!r}: the label is an integer class (0/1)")
        if prop.required is False:
            self.problem(f"{where}.required", "the label is always required")
        if not prop.enum:
            return DEFAULT_LABEL_VALUES
        values = [e.value for e in prop.enum]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or len(set(values)) != 2:
            self.problem(f"{where}.enum", f"{values}: a binary label needs exactly two integer values")
            return DEFAULT_LABEL_VALUES
        return tuple(sorted(values))

    def options(self, prop, where: str) -> None:
        options = prop.logicalTypeOptions or {}
        unchecked = sorted(set(options) - _CHECKED_OPTIONS - _DESCRIPTIVE_OPTIONS)
        if unchecked:
            self.problem(f"{where}.logicalTypeOptions", f"{unchecked} not checked by spark-mlops (it checks minimum "
                                                         "and maximum): remove them")

    def custom(self, items, where: str, known: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for item in items or []:
            if item.vendor not in (None, VENDOR):
                continue  # another tool's
            if item.property not in known:
                self.problem(f"{where}", f"unknown custom property {item.property!r} (spark-mlops reads "
                                         f"{', '.join(known)}; another tool's needs its vendor)")
                continue
            values[item.property] = item.value
        return values

    def unknown_fields(self, raw: Any, model: type, where: str) -> None:
        """The standard's model ignores unknown fields below the top level; the JSON schema refuses them."""
        if not isinstance(raw, dict):
            return
        names = {f.alias or name for name, f in model.model_fields.items()}
        for key in raw:
            if key not in names:
                self.problem(f"{where}.{key}", "not an ODCS field")


def _identifier(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z_][0-9A-Za-z_]{0,254}", value) is not None


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("schema" if part == "schema" else str(part))
    return out or "document"


def _pydantic_message(error: dict) -> str:
    if error.get("type") == "extra_forbidden":
        return "not an ODCS field"
    value = error.get("input")
    shown = "" if isinstance(value, dict | list) else f" (found {value!r})"
    return f"{error['msg'].lower()}{shown}"


# ---------------------------------------------------------------- writing


def to_yaml(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


def write_document(document: dict, output: str, *, force: bool = False) -> None:
    """Write ``document`` as YAML to ``output`` at once (a temporary file renamed into place), after
    checking that it reads back as a contract; an existing file is replaced only with ``force``."""
    text = to_yaml(document)
    parse_contract(text, output)  # never write a contract the lifecycle would refuse
    target = Path(output)
    if target.exists() and not force:
        raise ConfigError(f"{output} exists: pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_file(path: str) -> dict:
    """The ODCS document for the old-format contract file at ``path``."""
    if not Path(path).is_file():
        raise ConfigError(f"data contract {path}: no such file")
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"data contract {path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict) or "apiVersion" in raw or "features" not in raw:
        raise ConfigError(f"data contract {path}: not an old-format spark-mlops contract (label:, features:)")
    try:
        return convert_legacy(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"data contract {path}: cannot convert: {exc!r} (the old format needs name, label, "
                          "features)") from None


def convert_legacy(raw: dict) -> dict:
    """An ODCS document for a contract in the old spark-mlops format (``label:``, ``features:``)."""
    name = str(raw["name"])
    custom = []
    if "require_key_columns" in raw:
        custom.append({"property": "requireKeyColumns", "value": bool(raw["require_key_columns"])})
    if "row_id_column" in raw:
        custom.append({"property": "rowIdColumn", "value": str(raw["row_id_column"])})
    if raw.get("pass_through_columns") is not None:
        custom.append({"property": "passThroughColumns", "value": list(raw["pass_through_columns"])})
    columns = [{"name": key, "logicalType": "string", "primaryKey": True, "primaryKeyPosition": i + 1, "unique": True}
               for i, key in enumerate(raw.get("key_columns") or [])]
    physical = {"double": ("number", "double"), "int": ("integer", "int"), "long": ("integer", "bigint"),
                "string": ("string", "string")}
    for f in raw["features"]:
        logical, phys = physical[f.get("type", "double")]
        column: dict[str, Any] = {"name": f["name"], "logicalType": logical, "physicalType": phys}
        if f.get("nullable") is False:
            column["required"] = True
        bounds = {k: f[old] for k, old in (("minimum", "min"), ("maximum", "max")) if f.get(old) is not None}
        if bounds:
            column["logicalTypeOptions"] = bounds
        if f.get("missing_values"):
            column["customProperties"] = [{"property": "missingValues", "value": list(f["missing_values"])}]
        columns.append(column)
    columns.append({"name": raw["label"], "logicalType": "integer", "physicalType": "int", "required": True,
                    "enum": [{"value": v} for v in raw.get("label_values", DEFAULT_LABEL_VALUES)],
                    "customProperties": [{"property": "mlRole", "value": "label"}]})
    document = {"apiVersion": API_VERSION, "kind": "DataContract", "id": name, "name": name, "version": "1.0.0",
                "status": "active"}
    if custom:
        document["customProperties"] = custom
    document["schema"] = [{"name": name, "physicalType": "table", "properties": columns}]
    return document
