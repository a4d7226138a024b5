"""Checks that PromQL expressions use only the metrics and labels the collector declares.

The dashboards and the alerting rules may query a series only if it is declared in
`collector/metric_catalog.py`, produced by a recording rule of `grafana/prometheus/rules.yml`,
or added by Prometheus itself (`up`, and the `job`/`instance` labels of every scraped series).
Expressions are parsed into a real PromQL syntax tree (the `promql-parser` package, a port of
Prometheus' own parser), so a metric name inside a string or a label in a `by` clause is not
mistaken for the other.

Grafana variables are not PromQL: `grafana_to_promql()` substitutes them first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser
import yaml

from collector.metric_catalog import exposed_series_names

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus synthesizes for every scrape target.
SCRAPE_SERIES = {"up": TARGET_LABELS}

# Grafana's built-in interval variables, replaced by durations for parsing and evaluation.
# The values suit a test Prometheus that scrapes every second and has minutes of data.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_PLAIN_NAME_ALTERNATIVES = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\|[a-zA-Z_:][a-zA-Z0-9_:]*)*$")


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a value for a regex matcher inside a PromQL string literal.

    The regex needs `\\.`; written in a PromQL string that backslash is doubled (`\\\\.`).
    """
    return "".join("\\\\" + char if char in "$^*{}[]'+?.()|\\" else char for char in value)


def grafana_to_promql(expr: str, selected: Mapping[str, Sequence[str]] | None = None) -> str:
    """The expression Grafana sends: variables at "All" (`.*`) unless `selected` names values.

    Interval variables become fixed durations. A variable with selected values becomes what
    Grafana writes into a regex matcher: one value regex-escaped, several as `(a|b)`.
    """
    for variable, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, duration)
    chosen = selected or {}

    def value(match: re.Match[str]) -> str:
        values = chosen.get(match.group(1) or match.group(2))
        if not values:
            return ".*"
        escaped = [_regex_escape(item) for item in values]
        return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"

    return _VARIABLE.sub(value, expr)


def variables_used(expr: str) -> set[str]:
    """Names of the non-builtin Grafana variables an expression refers to."""
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, "")
    return {braced or plain for braced, plain in _VARIABLE.findall(expr)}


@dataclass
class _References:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


def _selector_names(node: promql_parser.VectorSelector) -> list[str]:
    if node.name:
        return [node.name]
    # `{__name__=~"a|b"}` (used by Grafana variables spanning several metrics).
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__" and _PLAIN_NAME_ALTERNATIVES.match(matcher.value):
            return matcher.value.split("|")
    raise ValueError(f"selector {node} names no metric: cannot check it against the catalog")


def _collect(node: object, found: _References) -> None:
    if isinstance(node, promql_parser.VectorSelector):
        labels = {m.name for m in node.matchers.matchers if m.name != "__name__"}
        for name in _selector_names(node):
            found.selectors.append((name, labels))
        return
    if isinstance(node, promql_parser.MatrixSelector):
        _collect(node.vector_selector, found)
        return
    if isinstance(node, promql_parser.AggregateExpr):
        if node.modifier is not None:
            found.grouping_labels.update(node.modifier.labels)
        _collect(node.expr, found)
        if node.param is not None:
            _collect(node.param, found)
        return
    if isinstance(node, promql_parser.BinaryExpr):
        modifier = node.modifier
        if modifier is not None:
            if modifier.matching is not None:
                found.grouping_labels.update(modifier.matching.labels)
            found.grouping_labels.update(modifier.group_labels or ())
        _collect(node.lhs, found)
        _collect(node.rhs, found)
        return
    if isinstance(node, promql_parser.Call):
        for argument in node.args:
            _collect(argument, found)
        return
    for child in ("expr",):  # ParenExpr, UnaryExpr, SubqueryExpr
        if hasattr(node, child):
            _collect(getattr(node, child), found)


def references(promql: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """(metric name, labels matched on it) for each selector, and the labels grouped or matched on.

    Raises ValueError with the parser's message if `promql` is not valid PromQL.
    """
    try:
        tree = promql_parser.parse(promql)
    except Exception as error:  # the parser raises a bare Exception subclass per version
        raise ValueError(f"not valid PromQL: {promql!r}: {error}") from error
    found = _References()
    _collect(tree, found)
    return found.selectors, found.grouping_labels


def catalog_series() -> dict[str, frozenset[str]]:
    """Series name -> labels it may carry, for every series the collector exposes."""
    declared: dict[str, frozenset[str]] = {}
    for series, spec in exposed_series_names().items():
        extra = {"le"} if series.endswith("_bucket") and spec.type == "histogram" else set()
        declared[series] = frozenset(spec.labels) | extra | TARGET_LABELS
    for series, labels in SCRAPE_SERIES.items():
        declared[series] = labels
    return declared


def recording_rules(rule_files: Iterable[Path]) -> list[dict]:
    rules = []
    for path in rule_files:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document.get("groups", []):
            rules.extend(rule for rule in group.get("rules", []) if "record" in rule)
    return rules


def _output_labels(expr: str, declared: Mapping[str, frozenset[str]]) -> frozenset[str]:
    tree = promql_parser.parse(expr)
    if isinstance(tree, promql_parser.AggregateExpr) and tree.modifier is not None \
            and tree.modifier.type == promql_parser.AggModifierType.By:
        return frozenset(tree.modifier.labels)
    selectors, _ = references(expr)
    return frozenset().union(*(declared.get(name, frozenset()) for name, _ in selectors))


def declared_series(rule_files: Iterable[Path]) -> dict[str, frozenset[str]]:
    """Catalog series plus the series recording rules produce, with the labels they keep."""
    declared = catalog_series()
    for rule in recording_rules(rule_files):
        labels = _output_labels(rule["expr"], declared) | frozenset(rule.get("labels", {}))
        declared[rule["record"]] = labels
    return declared


def problems(promql: str, declared: Mapping[str, frozenset[str]]) -> list[str]:
    """What in `promql` is not declared; empty when every metric and label is."""
    try:
        selectors, grouping = references(promql)
    except ValueError as error:
        return [str(error)]
    found: list[str] = []
    known_labels: set[str] = set()
    for name, labels in selectors:
        if name not in declared:
            found.append(f"metric {name} is not declared in collector/metric_catalog.py "
                         "nor recorded by a rule")
            continue
        known_labels |= declared[name]
        for label in sorted(labels - declared[name]):
            found.append(f"label {label} is not declared on {name}")
    for label in sorted(grouping - known_labels):
        if selectors:
            found.append(f"label {label} is grouped or matched on but no metric here carries it")
    return found


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$", re.S)


def variable_query_problems(query: str, declared: Mapping[str, frozenset[str]]) -> list[str]:
    """Problems of a Grafana `label_values(selector, label)` variable query."""
    match = _LABEL_VALUES.match(query.strip())
    if match is None or not match.group("selector"):
        return [f"variable query {query!r} is not label_values(<selector>, <label>)"]
    selector = grafana_to_promql(match.group("selector"))
    found = problems(selector, declared)
    if not found:
        names = {name for name, _ in references(selector)[0]}
        for name in sorted(names):
            if match.group("label") not in declared[name]:
                found.append(f"label {match.group('label')} is not declared on {name}")
    return found


def rule_files_default() -> list[Path]:
    return sorted((Path(__file__).resolve().parent / "prometheus").glob("*rules*.yml"))
