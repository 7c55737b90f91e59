"""A small WIQL subset for the sandbox: SELECT … FROM WorkItems [WHERE c AND c …] [ORDER BY f [ASC|DESC], …]."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.azure.common import ApiError, Ctx, parse_time
from sandbox.azure.data import WorkItem

_SHORT_FIELDS = {
    "id": "System.Id",
    "title": "System.Title",
    "state": "System.State",
    "reason": "System.Reason",
    "workitemtype": "System.WorkItemType",
    "teamproject": "System.TeamProject",
    "areapath": "System.AreaPath",
    "iterationpath": "System.IterationPath",
    "changeddate": "System.ChangedDate",
    "createddate": "System.CreatedDate",
    "rev": "System.Rev",
    "tags": "System.Tags",
    "assignedto": "System.AssignedTo",
}


@dataclass
class _Wiql:
    columns: list[str]
    conditions: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]


def _field_name(raw: str) -> str:
    name = raw.strip().strip("[]").strip()
    return _SHORT_FIELDS.get(name.lower().replace(" ", ""), name)


def parse_wiql(query: str) -> _Wiql:
    def fail(why: str) -> ApiError:
        return ApiError(
            400,
            f"VS402400: The WIQL query is not supported by the sandbox or is malformed: {why}",
            "WorkItemTrackingQuerySyntaxException",
        )

    m = re.fullmatch(
        r"\s*select\s+(?P<cols>.+?)\s+from\s+workitems(?:\s+where\s+(?P<where>.+?))?"
        r"(?:\s+order\s+by\s+(?P<order>.+?))?\s*(?:asof\s+'[^']*')?\s*",
        query,
        re.IGNORECASE | re.DOTALL,
    )
    if not m:
        raise fail("expected SELECT … FROM WorkItems")
    columns = [_field_name(c) for c in m.group("cols").split(",")]
    conditions: list[tuple[str, str, Any]] = []
    where = m.group("where")
    if where:
        if re.search(r"\bor\b", re.sub(r"'[^']*'", "''", where), re.IGNORECASE):
            raise fail("OR is not supported")
        for part in re.split(r"\s+and\s+", where.strip().strip("()"), flags=re.IGNORECASE):
            c = re.fullmatch(
                r"\s*(\[[^\]]+\]|[\w.]+)\s*(not\s+in|in|<>|>=|<=|=|>|<|under|contains)\s*(.+?)\s*",
                part,
                re.IGNORECASE | re.DOTALL,
            )
            if not c:
                raise fail(part)
            op = re.sub(r"\s+", " ", c.group(2).lower())
            raw = c.group(3)
            if op in ("in", "not in"):
                values = [_literal(v) for v in re.findall(r"'[^']*'|[^,()\s]+", raw.strip("() "))]
                conditions.append((_field_name(c.group(1)), op, values))
            else:
                conditions.append((_field_name(c.group(1)), op, _literal(raw)))
    order = []
    if m.group("order"):
        for part in m.group("order").split(","):
            bits = part.split()
            order.append((_field_name(bits[0]), len(bits) > 1 and bits[1].lower() == "desc"))
    return _Wiql(columns, conditions, order or [("System.Id", False)])


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    m = re.fullmatch(r"@today\s*(?:([+-])\s*(\d+))?", raw, re.IGNORECASE)
    if m:
        return ("@today", int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1))
    return raw  # @project, @me…


def _item_value(item: WorkItem, name: str) -> Any:
    r = item.latest
    return {
        "system.id": item.id,
        "system.title": r.title,
        "system.state": r.state,
        "system.reason": r.reason,
        "system.workitemtype": item.type,
        "system.teamproject": item.project.name,
        "system.areapath": item.area,
        "system.iterationpath": r.iteration,
        "system.changeddate": r.at,
        "system.createddate": item.created,
        "system.rev": r.rev,
        "system.tags": r.tags,
    }.get(name.lower())


def wiql_sort_key(item: WorkItem, name: str) -> Any:
    value = _item_value(item, name)
    return (value is None, value if value is not None else 0)


def wiql_matches(item: WorkItem, ctx: Ctx, cond: tuple[str, str, Any], day_precision: bool, ctx_now: int) -> bool:
    name, op, expected = cond
    actual = _item_value(item, name)
    dates = name.lower() in ("system.changeddate", "system.createddate")

    def norm(value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "@project":
            if ctx.project is None:
                raise ApiError(
                    400,
                    "VS402365: @project is only valid in a project context.",
                    "WorkItemTrackingQuerySyntaxException",
                )
            value = ctx.project.name
        if dates:
            if isinstance(value, tuple):  # @today ± days, against the sandbox's own clock
                value = ctx_now - ctx_now % 86_400_000 + value[1] * 86_400_000
            elif isinstance(value, str):
                value = parse_time(value, name)
            if day_precision and isinstance(value, int):
                value -= value % 86_400_000
        if isinstance(value, str):
            return value.lower()
        return value

    if actual is None:
        return op in ("<>", "not in")
    if dates and day_precision:
        actual -= actual % 86_400_000
    left = actual.lower() if isinstance(actual, str) else actual
    if op in ("in", "not in"):
        found = left in [norm(v) for v in expected]
        return found if op == "in" else not found
    right = norm(expected)
    if op == "under":
        return isinstance(left, str) and (left == right or left.startswith(str(right) + "\\"))
    if op == "contains":
        return isinstance(left, str) and str(right) in left
    try:
        return {
            "=": left == right,
            "<>": left != right,
            ">": left > right,
            ">=": left >= right,
            "<": left < right,
            "<=": left <= right,
        }[op]
    except TypeError:
        raise ApiError(
            400,
            f"VS402400: The value of field {name} cannot be compared with {expected!r}.",
            "WorkItemTrackingQuerySyntaxException",
        ) from None
