"""Field types, checked the way Katib's webhook decodes them.

The CRD lets anything through (`x-kubernetes-preserve-unknown-fields`), so the
webhook's JSON decoding into Katib's Go structs is the real schema: a wrong
type (an unquoted `min: 0.1`, `value: 10`) is an error, an unknown field is
dropped silently (a typo we flag as stricter than Katib). The field schema is
Katib's swagger.json, shipped in `pipeline/schema/`. A batch/v1 Job trial
template is converted to a Kubernetes Job by the webhook, which rejects unknown
fields and wrong types; we check it against the kubernetes client's models.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from pipeline.lint.problems import Findings

SWAGGER_FILE = "katib-v1beta1-swagger.json"
CONFIG_FILE = "katib-config.json"


@cache
def load_schema_file(name: str) -> dict[str, Any]:
    return json.loads(resources.files("pipeline.katib").joinpath("schema", name).read_text(encoding="utf-8"))


def katib_config() -> dict[str, Any]:
    return load_schema_file(CONFIG_FILE)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )
    if isinstance(value, (dict, list)):
        return f"a {kind}"
    return f"{kind} {json.dumps(value) if not isinstance(value, str) else repr(value)}"


def _type_ok(value: Any, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "object":
        return isinstance(value, dict)
    return True


def _unknown(found: Findings, path: str, key: str, known: list[str], what: str) -> None:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    found.warning(path, f"unknown field {key!r}: {what} drops it silently{hint}")


def check_katib_fields(exp: dict[str, Any]) -> Findings:
    """Every field of `spec` against Katib's swagger definitions."""
    found = Findings()
    defs = load_schema_file(SWAGGER_FILE)["definitions"]

    def walk(value: Any, schema: dict[str, Any], path: str) -> None:
        if value is None:
            return  # JSON null decodes to the zero value
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name not in defs:
                return  # a Kubernetes type (Container, Unstructured, ...): not Katib's to check
            schema = defs[name]
        json_type = schema.get("type") or ("object" if "properties" in schema else None)
        if json_type and not _type_ok(value, json_type):
            hint = " (quote it)" if json_type == "string" and isinstance(value, (int, float, bool)) else ""
            found.error(
                path, f"expected {'an' if json_type[0] in 'aeiou' else 'a'} {json_type}, found {_describe(value)}{hint}"
            )
            return
        if json_type == "array":
            for i, item in enumerate(value):
                walk(item, schema.get("items", {}), f"{path}[{i}]")
        elif json_type == "object":
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub = f"{path}.{key}"
                if props is not None and key in props:
                    walk(item, props[key], sub)
                elif extra is not None:
                    walk(item, extra, sub)
                elif props is not None:
                    _unknown(found, sub, str(key), list(props), "Katib")

    walk(exp.get("spec"), {"$ref": "#/definitions/v1beta1.ExperimentSpec"}, "spec")
    return found


# --- a batch/v1 Job trial template -------------------------------------------------------------


def check_job(job: dict[str, Any], path: str) -> Findings:
    """`job` (placeholders already substituted) as Katib converts it to a batch/v1 Job."""
    import kubernetes.client as k8s  # lazy: ~0.5 s, only for Job templates

    found = Findings()

    def walk(value: Any, type_name: str, where: str) -> None:
        if value is None or type_name == "object":  # IntOrString, Quantity, RawExtension
            return
        if type_name.startswith("list["):
            if not isinstance(value, list):
                found.error(where, f"cannot convert to a batch/v1 Job: expected a list, found {_describe(value)}")
                return
            for i, item in enumerate(value):
                walk(item, type_name[5:-1], f"{where}[{i}]")
            return
        if type_name.startswith("dict("):
            if not isinstance(value, dict):
                found.error(where, f"cannot convert to a batch/v1 Job: expected a mapping, found {_describe(value)}")
                return
            inner = type_name[5:-1].split(", ", 1)[1]
            quantity = where.endswith((".limits", ".requests"))  # resource quantities may be numbers
            for key, item in value.items():
                if not (quantity and isinstance(item, (int, float)) and not isinstance(item, bool)):
                    walk(item, inner, f"{where}.{key}")
            return
        simple = {"str": "string", "datetime": "string", "int": "integer", "float": "number", "bool": "boolean"}
        if type_name in simple:
            if not _type_ok(value, simple[type_name]):
                found.error(
                    where, f"cannot convert to a batch/v1 Job: expected {simple[type_name]}, found {_describe(value)}"
                )
            return
        model = getattr(k8s, type_name, None)
        if model is None:
            return
        if not isinstance(value, dict):
            found.error(
                where, f"cannot convert to a batch/v1 Job: expected a mapping ({type_name}), found {_describe(value)}"
            )
            return
        by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                close = difflib.get_close_matches(str(key), list(by_json), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                found.error(
                    f"{where}.{key}",
                    f"unknown field {key!r} in {type_name}: Katib cannot convert "
                    f"the trial template to a batch/v1 Job{hint}",
                )
                continue
            walk(item, model.openapi_types[by_json[key]], f"{where}.{key}")

    walk(job, "V1Job", path)
    return found
