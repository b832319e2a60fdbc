"""Expectations on one step's outcome; each failure says what was expected and what was found."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ExpectationFailed(AssertionError):
    """An expectation that does not hold, with what was found."""


@dataclass(frozen=True)
class Outcome:
    """What a step produced: the structured result, the text content, and the error message if it failed."""

    structured: dict[str, Any] | None
    text: str
    error: str | None = None


def dig(value: Any, path: str) -> Any:
    """``value`` at a dotted ``path`` (list indexes are numbers)."""
    for part in path.split("."):
        if isinstance(value, list):
            try:
                value = value[int(part)]
            except (ValueError, IndexError) as exc:
                raise ExpectationFailed(f"{path}: no item {part!r} in a list of {len(value)}") from exc
        elif isinstance(value, dict):
            if part not in value:
                raise ExpectationFailed(f"{path}: no field {part!r} (fields: {', '.join(sorted(value))})")
            value = value[part]
        else:
            raise ExpectationFailed(f"{path}: {part!r} of a {type(value).__name__}")
    return value


def _items(bundle: dict[str, Any], section: str) -> list[dict[str, Any]]:
    sections = bundle.get("sections")
    if not isinstance(sections, list):
        raise ExpectationFailed("the result is not a recall bundle (no sections)")
    if section == "*":
        return [item for s in sections for item in s["items"]]
    for s in sections:
        if s["name"] == section:
            items: list[dict[str, Any]] = s["items"]
            return items
    raise ExpectationFailed(f"no section {section!r} (sections: {', '.join(s['name'] for s in sections)})")


def _short(items: list[dict[str, Any]]) -> str:
    return json.dumps([item["text"][:80] for item in items][:8], ensure_ascii=False)


def _section(outcome: Outcome, spec: dict[str, Any]) -> None:
    bundle = _structured(outcome)
    name = spec["section"]
    items = _items(bundle, name)
    checks: dict[str, Callable[[Any], bool]] = {
        "contains": lambda t: any(t in item["text"] for item in items),
        "not_contains": lambda t: not any(t in item["text"] for item in items),
        "has_ref": lambda r: any(r in item["refs"] for item in items),
        "lacks_ref": lambda r: not any(r in item["refs"] for item in items),
        "max_items": lambda n: len(items) <= n,
        "min_items": lambda n: len(items) >= n,
        "max_tokens": lambda n: sum(item["token_est"] for item in items) <= n,
    }
    for key, value in spec.items():
        if key == "section":
            continue
        if key not in checks:
            raise ExpectationFailed(f"unknown section check {key!r} (known: {', '.join(checks)})")
        if not checks[key](value):
            raise ExpectationFailed(f"section {name}: {key} {value!r} does not hold; items: {_short(items)}")


def _structured(outcome: Outcome) -> dict[str, Any]:
    if outcome.structured is None:
        raise ExpectationFailed(f"the step has no structured result (error: {outcome.error})")
    return outcome.structured


def _omitted(outcome: Outcome, spec: dict[str, Any]) -> None:
    omissions = _structured(outcome).get("omissions", [])
    reason = spec["omitted"]
    ids = [i for o in omissions if o["reason"] == reason for i in o["ids"]]
    if "id" in spec and spec["id"] not in ids:
        raise ExpectationFailed(f"{spec['id']} is not omitted for {reason!r}; omitted for it: {ids[:10]}")
    if "id" not in spec and not ids:
        raise ExpectationFailed(f"nothing is omitted for {reason!r}")


def _conflict(outcome: Outcome, spec: dict[str, Any]) -> None:
    wanted = spec["conflict"]
    for conflict in _structured(outcome).get("conflicts", []):
        if wanted.get("item", conflict["item"]) == conflict["item"] and (
            "newer" not in wanted or wanted["newer"] in conflict["newer"]
        ):
            return
    raise ExpectationFailed(f"no conflict like {wanted}; conflicts: {_structured(outcome).get('conflicts')}")


def _provenance(outcome: Outcome, spec: dict[str, Any]) -> None:
    provenance = _structured(outcome)["provenance"]
    for key, value in spec["provenance"].items():
        if key.endswith("_at_most"):
            field = key.removesuffix("_at_most")
            if provenance[field] > value:
                raise ExpectationFailed(f"provenance.{field} is {provenance[field]}, more than {value}")
        elif provenance.get(key) != value:
            raise ExpectationFailed(f"provenance.{key} is {provenance.get(key)!r}, not {value!r}")


def _field(outcome: Outcome, spec: dict[str, Any]) -> None:
    path = spec["field"]
    value = dig(_structured(outcome), path)
    checks: dict[str, Callable[[Any], bool]] = {
        "equals": lambda v: value == v,
        "contains": lambda v: v in value,
        "at_most": lambda v: value <= v,
        "at_least": lambda v: value >= v,
    }
    for key, expected in spec.items():
        if key == "field":
            continue
        if key not in checks:
            raise ExpectationFailed(f"unknown field check {key!r} (known: {', '.join(checks)})")
        if not checks[key](expected):
            raise ExpectationFailed(f"{path} is {value!r}: {key} {expected!r} does not hold")


def _total(outcome: Outcome, spec: dict[str, Any]) -> None:
    used = _structured(outcome)["token_used_est"]
    if used > spec["total_tokens_at_most"]:
        raise ExpectationFailed(f"token_used_est is {used}, more than {spec['total_tokens_at_most']}")


def _text(outcome: Outcome, spec: dict[str, Any]) -> None:
    if "text_contains" in spec and spec["text_contains"] not in outcome.text:
        raise ExpectationFailed(f"the text does not contain {spec['text_contains']!r}: {outcome.text[:200]!r}")
    if "text_not_contains" in spec and spec["text_not_contains"] in outcome.text:
        raise ExpectationFailed(f"the text contains {spec['text_not_contains']!r}")


def _error(outcome: Outcome, spec: dict[str, Any]) -> None:
    if outcome.error is None:
        raise ExpectationFailed(f"expected an error containing {spec['error']!r}; the call succeeded")
    if spec["error"] not in outcome.error:
        raise ExpectationFailed(f"the error does not contain {spec['error']!r}: {outcome.error[:300]!r}")


CHECKS: dict[str, Callable[[Outcome, dict[str, Any]], None]] = {
    "section": _section,
    "omitted": _omitted,
    "conflict": _conflict,
    "provenance": _provenance,
    "field": _field,
    "total_tokens_at_most": _total,
    "text_contains": _text,
    "text_not_contains": _text,
    "error": _error,
}


def check(outcome: Outcome, spec: dict[str, Any]) -> None:
    """Raise ``ExpectationFailed`` unless ``spec`` holds for ``outcome``."""
    kind = next((key for key in spec if key in CHECKS), None)
    if kind is None:
        raise ExpectationFailed(f"unknown expectation {spec} (known: {', '.join(CHECKS)})")
    CHECKS[kind](outcome, spec)
