"""A checker for CloudWatch Embedded Metric Format records, from the specification's rules (not from our code).

The specification (CloudWatch User Guide, "Specification: Embedded metric format"): the root object has `_aws`
with `Timestamp` (epoch milliseconds) and `CloudWatchMetrics`, an array of directives; each directive has a
`Namespace` (1-1024 characters), `Dimensions` (an array of dimension sets, each an array of at most 30 names)
and `Metrics` (at most 100 of `{Name, Unit?}`). Every name a directive refers to must be a member of the root
object: a dimension's value a string (1-1024 characters), a metric's value a number (or an array of numbers).
"""

from __future__ import annotations

from typing import Any

# CloudWatch's StandardUnit values.
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def emf_problems(record: dict[str, Any]) -> list[str]:
    """What makes `record` an invalid EMF record; empty when it is valid."""
    meta = record.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws object"]
    problems = []
    if not isinstance(meta.get("Timestamp"), int) or isinstance(meta.get("Timestamp"), bool):
        problems.append("_aws.Timestamp is not an integer (epoch ms)")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "_aws.CloudWatchMetrics is not a non-empty array"]
    for index, directive in enumerate(directives):
        where = f"CloudWatchMetrics[{index}]"
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 1024:
            problems.append(f"{where}.Namespace is not a 1-1024 character string")
        dimension_sets = directive.get("Dimensions")
        if not isinstance(dimension_sets, list):
            problems.append(f"{where}.Dimensions is not an array")
            dimension_sets = []
        for names in dimension_sets:
            if not isinstance(names, list) or len(names) > 30:
                problems.append(f"{where}: a dimension set is not an array of at most 30 names")
                continue
            for name in names:
                value = record.get(name)
                if not isinstance(value, str) or not 1 <= len(value) <= 1024:
                    problems.append(f"{where}: dimension {name!r} has no 1-1024 character string value: {value!r}")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or not 1 <= len(metrics) <= 100:
            problems.append(f"{where}.Metrics is not an array of 1-100 metrics")
            metrics = []
        for metric in metrics:
            name, unit = metric.get("Name"), metric.get("Unit", "None")
            if not isinstance(name, str) or not name:
                problems.append(f"{where}: a metric without a name")
                continue
            if unit not in UNITS:
                problems.append(f"{where}: metric {name!r} has unit {unit!r}, not a CloudWatch unit")
            value = record.get(name)
            if not (_number(value) or (isinstance(value, list) and value and all(map(_number, value)))):
                problems.append(f"{where}: metric {name!r} has no numeric value: {value!r}")
    return problems
