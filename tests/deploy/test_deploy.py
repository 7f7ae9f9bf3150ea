"""deploy/ checked against the product itself.

Metric and label names in the Prometheus rules and the Grafana dashboard against what
:class:`flushwatch.metrics.Metrics` (and the sink bundle on its registry) really exposes; commands against
the CLI's argument parser; ``FLUSHWATCH_*`` variables and config files against :func:`load_config`; probe
and scrape ports against ``metrics.port``; stop timeouts against the drain deadlines in the code; the rules
with ``promtool check`` / ``promtool test``. Structural checks only: no Docker, no cluster, no systemd.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from flushwatch.cli import build_parser
from flushwatch.config import Config, load_config
from flushwatch.errors import ConfigError
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from ingest.driver import REASONS
from ingest.service import IngestService
from sinks.metrics import SinkMetrics

try:
    import yaml
except ImportError:  # pragma: no cover - reported by load_yaml
    yaml = None

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "flushwatch-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "flushwatch-rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "flushwatch-dashboard.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "flushwatch@.service"

ROLES = frozenset({"ingest", "process", "sink"})
SEVERITIES = frozenset({"info", "warning", "critical"})
#: series Prometheus itself records per scrape target, with their own labels
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}


# ---------------------------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    """One YAML document (PyYAML's safe loader, which resolves anchors and ``<<`` merges)."""
    if yaml is None:
        pytest.fail("PyYAML is not installed: tests/deploy need it to read deploy/*.yml "
                    "(add pyyaml to the dev extra in pyproject.toml)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Every document of a multi-document YAML file."""
    if yaml is None:
        pytest.fail("PyYAML is not installed: tests/deploy need it to read deploy/*.yml "
                    "(add pyyaml to the dev extra in pyproject.toml)")
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def promtool() -> str:
    """The promtool binary; skipped without it, except where FW_TEST_REQUIRE_PROMTOOL is set (.ci/run sets
    it), where a missing promtool is a failure."""
    path = shutil.which("promtool")
    if path is not None:
        return path
    if os.environ.get("FW_TEST_REQUIRE_PROMTOOL"):
        pytest.fail("promtool is not on PATH but FW_TEST_REQUIRE_PROMTOOL is set: install it "
                    "(Debian: apt-get install -y prometheus) so the alert rules are checked")
    pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus); "
                "with FW_TEST_REQUIRE_PROMTOOL set this test fails instead")


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str | int | float) -> float:
    """A Prometheus, compose or systemd duration (``90s``, ``2m``, ``1h30m``, ``1min 30s``, bare seconds)."""
    if isinstance(text, int | float):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w|y)?", text.strip())
    assert parts and re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*(ms|sec|min|s|m|h|d|w|y)?)+\s*", text), f"bad duration {text!r}"
    return sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)


def required_stop_s(config: Config) -> float:
    """How long a role may take to drain after SIGTERM, from the deadlines in the code and the config:
    ingest drains its queue (IngestService's drain deadline) or the sink its deliveries
    (sink.shutdown_drain_s, and revoke_drain_s when leaving the group), then the producer's final flush
    can wait up to its request timeout."""
    ingest_drain = inspect.signature(IngestService).parameters["drain_deadline_s"].default
    request_timeout = inspect.signature(Producer).parameters["request_timeout_ms"].default / 1000
    return max(ingest_drain, config.sink.shutdown_drain_s + config.sink.revoke_drain_s) + request_timeout


def parse_role_argv(argv: list[str]) -> Any:
    """``argv`` after ``python -m flushwatch.cli``, parsed by the real parser; fails on an unknown subcommand
    or flag instead of exiting."""
    assert argv, "no subcommand"
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`flushwatch {shlex.join(argv)}` is not a valid command line (argparse exit {exc.code})")


def cli_tail(command: list[str]) -> list[str]:
    """The arguments after ``python -m flushwatch.cli`` (fails when the command is not that)."""
    words = [str(word) for word in command]
    for start in range(len(words) - 2):
        if words[start + 1:start + 3] == ["-m", "flushwatch.cli"] and Path(words[start]).name.startswith("python"):
            return words[start + 3:]
    pytest.fail(f"{words} does not run `python -m flushwatch.cli`")


def config_from(environ: Mapping[str, str], path: Path | None = None) -> Config:
    """The config a process would build from this environment (and file); fails on an unknown setting."""
    try:
        return load_config(path, environ=dict(environ))
    except ConfigError as exc:
        pytest.fail(f"flushwatch rejects this configuration: {exc}")


# ------------------------------------------------------------------------- what flushwatch really exports


@dataclass(frozen=True)
class Exported:
    """Sample names in the exposition format, with their label names and their family's type."""

    labels: dict[str, frozenset[str]]
    types: dict[str, str]


@pytest.fixture(scope="module")
def exported() -> Exported:
    metrics = Metrics()
    sink_metrics = SinkMetrics.for_metrics(metrics)  # the sink service's extra metrics, on the same registry
    # labelled metrics expose samples only once a child exists: create one of each
    for bundle in (metrics, sink_metrics):
        for value in vars(bundle).values():
            if isinstance(value, MetricWrapperBase) and value._labelnames:
                value.labels(*("x" for _ in value._labelnames))
    metrics.staleness.touch("venue", "stream")
    families = list(text_string_to_metric_families(generate_latest(metrics.registry).decode()))
    silent = [family.name for family in families if not family.samples]
    assert not silent, f"metrics without samples (a collector this test does not know how to fill): {silent}"
    labels: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    for family in families:
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            types[sample.name] = family.type
    return Exported({name: frozenset(names) for name, names in labels.items()}, types)


def test_exported_metrics_come_with_the_exposition_suffixes(exported: Exported) -> None:
    counters = {name for name, kind in exported.types.items() if kind == "counter" and name.endswith("_total")}
    histograms = {name for name, kind in exported.types.items() if kind == "histogram"}
    assert "flushwatch_messages_total" in counters
    assert exported.labels["flushwatch_messages_total"] == {"venue", "stream"}
    assert {"flushwatch_processing_latency_seconds_bucket", "flushwatch_processing_latency_seconds_sum",
            "flushwatch_processing_latency_seconds_count"} <= histograms
    assert "le" in exported.labels["flushwatch_produce_latency_seconds_bucket"]
    assert exported.labels["flushwatch_seconds_since_last_message"] == {"venue", "stream"}
    assert exported.labels["flushwatch_sink_queue_depth"] == {"sink"}
    # the unsuffixed counter name is not a series
    assert "flushwatch_messages" not in exported.labels


@pytest.fixture(scope="module")
def target_labels() -> frozenset[str]:
    """Labels Prometheus attaches to every scraped series: job, instance, and those the scrape configs add
    (static ``labels`` in prometheus.yml, relabelings of the PodMonitor)."""
    found = {"job", "instance"}
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        for static in job.get("static_configs", []):
            found.update(static.get("labels", {}))
    for doc in load_yaml_all(K8S / "prometheus-operator" / "podmonitor.yaml"):
        for endpoint in doc["spec"]["podMetricsEndpoints"]:
            found.update(r["targetLabel"] for r in endpoint.get("relabelings", []) if "targetLabel" in r)
    return frozenset(found)


# ------------------------------------------------------------------------------------------- PromQL reading

_TOKEN = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>=~|!~|!=|==|>=|<=|[{}(),=<>+\-*/%^@])
  | (?P<space>\s+)
""", re.VERBOSE)
_AGGREGATORS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                          "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
_GROUPING = frozenset({"by", "without"})
_MATCHING = frozenset({"on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _GROUPING | _MATCHING | {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}
_COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})


@dataclass
class Selector:
    metric: str | None
    matchers: dict[str, tuple[str, str]]  # label -> (operator, value)
    at: int  # token index


@dataclass
class Query:
    expr: str
    selectors: list[Selector] = field(default_factory=list)
    #: (keyword, labels, first token, last token of the expression the clause applies to, paren depth)
    clauses: list[tuple[str, list[str], int, int, int]] = field(default_factory=list)
    #: (function, index of its "(", index of its ")")
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    def within(self, first: int, last: int) -> list[Selector]:
        return [s for s in self.selectors if first <= s.at <= last]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match is not None, f"cannot read PromQL at {expr[pos:pos + 30]!r} in {expr!r}"
        if match.lastgroup != "space":
            out.append((match.lastgroup or "", match.group()))
        pos = match.end()
    return out


def _closing(tokens: list[tuple[str, str]], open_at: int) -> int:
    depth = 0
    for index in range(open_at, len(tokens)):
        if tokens[index][1] == "(":
            depth += 1
        elif tokens[index][1] == ")":
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError("unbalanced parentheses")


def _opening(tokens: list[tuple[str, str]], close_at: int) -> int:
    depth = 0
    for index in range(close_at, -1, -1):
        if tokens[index][1] == ")":
            depth += 1
        elif tokens[index][1] == "(":
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError("unbalanced parentheses")


def parse_promql(expr: str) -> Query:
    """Enough of PromQL to find metric names, label matchers, grouping clauses and their scope."""
    tokens = _tokens(expr)
    query = Query(expr)
    depth = 0
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        if kind == "ident" and text.lower() in _GROUPING | _MATCHING:
            if following != "(":  # group_left without labels
                index += 1
                continue
            close = _closing(tokens, index + 1)
            labels = [t for k, t in tokens[index + 2:close] if k == "ident"]
            if text.lower() in _GROUPING:
                before = tokens[index - 1] if index else ("", "")
                if before[0] == "ident" and before[1].lower() in _AGGREGATORS:  # sum by (x) (body)
                    assert tokens[close + 1][1] == "(", f"no aggregation body after {text} in {expr!r}"
                    first, last = close + 1, _closing(tokens, close + 1)
                elif before[1] == ")":  # sum (body) by (x)
                    first, last = _opening(tokens, index - 1), index - 1
                    assert tokens[first - 1][1].lower() in _AGGREGATORS, f"{text} without aggregation in {expr!r}"
                else:
                    raise AssertionError(f"cannot place {text} ({', '.join(labels)}) in {expr!r}")
            else:
                first, last = 0, len(tokens) - 1
            query.clauses.append((text.lower(), labels, first, last, depth))
            index = close + 1
            continue
        if kind == "ident" and following == "(":
            query.calls.append((text, index + 1, _closing(tokens, index + 1)))
        elif kind == "ident" and text.lower() in _AGGREGATORS and following.lower() in _GROUPING:
            pass  # sum by (...) (...): the clause comes next
        elif kind == "ident" and text.lower() not in _KEYWORDS:
            selector = Selector(text, {}, index)
            if following == "{":
                index = _matchers(tokens, index + 1, selector, expr)
            query.selectors.append(selector)
        elif text == "{":
            selector = Selector(None, {}, index)
            index = _matchers(tokens, index, selector, expr)
            query.selectors.append(selector)
        index += 1
    assert depth == 0, f"unbalanced parentheses in {expr!r}"
    return query


def _matchers(tokens: list[tuple[str, str]], open_at: int, selector: Selector, expr: str) -> int:
    index = open_at + 1
    while tokens[index][1] != "}":
        label, operator, value = tokens[index:index + 3]
        assert label[0] == "ident" and operator[1] in ("=", "!=", "=~", "!~") and value[0] == "string", (
            f"cannot read the label matchers in {expr!r}")
        selector.matchers[label[1]] = (operator[1], value[1][1:-1])
        index += 3
        if tokens[index][1] == ",":
            index += 1
    return index


def labels_of(metric: str, exported: Exported, target_labels: frozenset[str]) -> frozenset[str] | None:
    if metric in PROMETHEUS_SERIES:
        return PROMETHEUS_SERIES[metric] | target_labels
    if metric in exported.labels:
        return exported.labels[metric] | target_labels
    return None


def promql_problems(expr: str, exported: Exported, target_labels: frozenset[str]) -> list[str]:
    """Every metric name, label matcher and grouping label of ``expr`` checked against the exports."""
    query = parse_promql(expr)
    problems = []
    if not query.selectors:
        problems.append("no metric selector")
    for selector in query.selectors:
        if selector.metric is None:
            problems.append("a selector without a metric name")
            continue
        known = labels_of(selector.metric, exported, target_labels)
        if known is None:
            problems.append(f"{selector.metric} is not a series flushwatch exports")
            continue
        for label in selector.matchers:
            if label != "__name__" and label not in known:
                problems.append(f"{selector.metric} has no label {label!r} (it has {sorted(known)})")
    for keyword, labels, first, last, _depth in query.clauses:
        for selector in query.within(first, last):
            known = labels_of(selector.metric or "", exported, target_labels)
            for label in labels:
                if known is not None and label not in known:
                    problems.append(f"{keyword} ({label}) but {selector.metric} has no label {label!r}")
    for function, first, last in query.calls:
        if function in _COUNTER_FUNCTIONS:
            for selector in query.within(first, last):
                kind = exported.types.get(selector.metric or "")
                counter_like = (kind == "counter" and (selector.metric or "").endswith("_total")) or (
                    kind == "histogram" and not (selector.metric or "").endswith("_created"))
                if not counter_like:
                    problems.append(f"{function}() over {selector.metric}, which is not a counter")
    return problems


def output_labels(expr: str, exported: Exported, target_labels: frozenset[str]) -> frozenset[str]:
    """Labels the result of ``expr`` keeps: those of its outermost ``by`` clauses (less ``le``, which
    histogram_quantile consumes), else those of its series."""
    query = parse_promql(expr)
    by = [clause for clause in query.clauses if clause[0] == "by"]
    if by:
        outer = min(clause[4] for clause in by)
        sets = [frozenset(clause[1]) for clause in by if clause[4] == outer]
        return frozenset.intersection(*sets) - {"le"}
    found: set[str] = set()
    for selector in query.selectors:
        found |= labels_of(selector.metric or "", exported, target_labels) or frozenset()
    return frozenset(found)


@pytest.mark.parametrize(("expr", "problem"), [
    ("rate(flushwatch_mesages_total[5m])", "flushwatch_mesages_total is not a series"),
    ("sum by (symbol) (rate(flushwatch_messages_total[5m]))", "by (symbol) but flushwatch_messages_total"),
    ("sum(rate(flushwatch_messages_total[5m])) without (symbol)", "without (symbol)"),
    ('flushwatch_reconnects_total{reson="error"}', "has no label 'reson'"),
    ("rate(flushwatch_consumer_lag[5m])", "not a counter"),
    ("histogram_quantile(0.9, sum by (le) (rate(flushwatch_processing_latency_seconds[5m])))", "is not a series"),
    ("flushwatch_messages > 0", "flushwatch_messages is not a series"),
    ('{__name__="flushwatch_messages_total"}', "without a metric name"),
])
def test_the_promql_check_catches_mistakes(expr: str, problem: str, exported: Exported,
                                          target_labels: frozenset[str]) -> None:
    found = promql_problems(expr, exported, target_labels)
    assert any(problem in p for p in found), found


def test_the_promql_check_accepts_good_queries(exported: Exported, target_labels: frozenset[str]) -> None:
    exprs = [
        'sum by (job, role, venue) (increase(flushwatch_reconnects_total{reason!~"rotation|notice"}[15m])) > 5',
        "histogram_quantile(0.99, sum by (le) (rate(flushwatch_produce_latency_seconds_bucket[5m])))",
        "sum(rate(flushwatch_sink_delivered_total[1m])) by (sink) unless on (sink) flushwatch_sink_queue_depth",
        'up{job="flushwatch"} == 0',
        "time() - max by (venue, stream) (flushwatch_last_message_timestamp_seconds) > 1.5e2",
    ]
    for expr in exprs:
        assert promql_problems(expr, exported, target_labels) == [], expr
    assert output_labels(exprs[0], exported, target_labels) == {"job", "role", "venue"}
    assert output_labels(exprs[1], exported, target_labels) == frozenset()


# ------------------------------------------------------------------------------------------------- rules


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = load_yaml(RULES)
    found = [rule for group in doc["groups"] for rule in group["rules"]]
    assert found, "no rules"
    return found


def test_every_rule_is_an_alert_with_for_severity_and_operator_annotations(rules: list[dict[str, Any]]) -> None:
    names = [rule.get("alert") for rule in rules]
    assert all(names), "recording rules do not belong in this file"
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in rules:
        name = rule["alert"]
        assert seconds(rule.get("for", "0s")) > 0, f"{name}: needs a for: so one bad scrape does not page"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity must be one of {SEVERITIES}"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert len(annotations.get("description", "").split()) >= 15, f"{name}: the description must say what to check"


def test_rules_use_only_exported_metrics_and_labels(rules: list[dict[str, Any]], exported: Exported,
                                                    target_labels: frozenset[str]) -> None:
    problems = {rule["alert"]: p for rule in rules if (p := promql_problems(rule["expr"], exported, target_labels))}
    assert problems == {}


def test_annotations_use_only_labels_the_alert_has(rules: list[dict[str, Any]], exported: Exported,
                                                   target_labels: frozenset[str]) -> None:
    for rule in rules:
        has = output_labels(rule["expr"], exported, target_labels) | set(rule.get("labels", {}))
        used = {label for text in rule["annotations"].values() for label in re.findall(r"\$labels\.(\w+)", text)}
        assert used <= has, f"{rule['alert']}: annotations use {sorted(used - has)}, the alert has {sorted(has)}"


def test_rules_cover_what_design_md_asks_for(rules: list[dict[str, Any]]) -> None:
    used = {s.metric for rule in rules for s in parse_promql(rule["expr"]).selectors}
    assert {"flushwatch_seconds_since_last_message", "flushwatch_consumer_lag", "flushwatch_reconnects_total",
            "flushwatch_sink_failures_total", "flushwatch_produce_errors_total", "flushwatch_dead_letters_total",
            "flushwatch_parse_errors_total", "up"} <= used


def test_reconnect_reasons_in_queries_are_reasons_the_driver_reports(rules: list[dict[str, Any]]) -> None:
    exprs = [rule["expr"] for rule in rules] + [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]
    checked = 0
    for expr in exprs:
        for selector in parse_promql(expr).selectors:
            if selector.metric == "flushwatch_reconnects_total" and "reason" in selector.matchers:
                values = set(selector.matchers["reason"][1].split("|"))
                assert values <= set(REASONS), f"{expr}: unknown reasons {values - set(REASONS)}"
                checked += 1
    assert checked


def test_promtool_check_rules() -> None:
    result = run([promtool(), "check", "rules", str(RULES)])
    count = len([r for g in load_yaml(RULES)["groups"] for r in g["rules"]])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run([promtool(), "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "FAILED" not in result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """Without `for:` the alerts fire at once, and the tests that expect them pending must fail."""
    tool = promtool()
    broken = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", RULES.read_text(encoding="utf-8"))
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run([tool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = run([promtool(), "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_rule_tests_show_each_alert_firing_and_quiet(rules: list[dict[str, Any]]) -> None:
    doc = load_yaml(RULE_TESTS)
    assert doc["rule_files"] == [RULES.name]
    fires: dict[str, int] = {}
    quiet_after_for: dict[str, int] = {}
    for_s = {rule["alert"]: seconds(rule["for"]) for rule in rules}
    for test in doc["tests"]:
        assert test["input_series"], "a test without input series"
        for case in test["alert_rule_test"]:
            name = case["alertname"]
            assert name in for_s, f"test of an alert that does not exist: {name}"
            if case["exp_alerts"]:
                fires[name] = fires.get(name, 0) + 1
                for alert in case["exp_alerts"]:
                    assert alert["exp_annotations"]["summary"], f"{name}: pin the rendered annotations"
            elif seconds(case["eval_time"]) >= for_s[name]:
                quiet_after_for[name] = quiet_after_for.get(name, 0) + 1
    assert set(fires) == set(for_s), f"alerts never shown firing: {sorted(set(for_s) - set(fires))}"
    assert set(quiet_after_for) == set(for_s), (
        f"alerts never shown quiet on healthy series: {sorted(set(for_s) - set(quiet_after_for))}")


# ------------------------------------------------------------------------------------------------ Grafana


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep theirs inside


def provisioned_datasource() -> dict[str, Any]:
    sources = [ds for path in sorted((PROVISIONING / "datasources").glob("*.y*ml"))
               for ds in load_yaml(path)["datasources"]]
    assert len(sources) == 1, sources
    return sources[0]


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    panels = list(dashboard_panels())
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = provisioned_datasource()["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and all(isinstance(grid[k], int) for k in "hwxy"), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == uid, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == uid


def test_dashboard_uses_only_exported_metrics_and_labels(exported: Exported, target_labels: frozenset[str]) -> None:
    problems = {}
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            if found := promql_problems(target["expr"], exported, target_labels):
                problems[f"{panel['title']} / {target['refId']}"] = found
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: unexpected query {query}"
        metric, label = match.groups()
        if label not in (labels_of(metric, exported, target_labels) or ()):
            problems[f"variable {variable['name']}"] = [f"{metric} has no label {label}"]
    assert problems == {}


def test_dashboard_shows_what_design_md_asks_for() -> None:
    exprs = [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]
    used = {selector.metric for expr in exprs for selector in parse_promql(expr).selectors}
    assert {"flushwatch_messages_total", "flushwatch_seconds_since_last_message", "flushwatch_parse_errors_total",
            "flushwatch_dead_letters_total", "flushwatch_reconnects_total", "flushwatch_produce_latency_seconds_bucket",
            "flushwatch_consumer_lag", "flushwatch_processing_latency_seconds_bucket", "flushwatch_alerts_total",
            "flushwatch_sink_delivered_total", "flushwatch_sink_failures_total", "flushwatch_queue_depth"} <= used
    by_type = [clause[1] for expr in exprs if "flushwatch_alerts_total" in expr
               for clause in parse_promql(expr).clauses]
    assert ["type", "severity"] in by_type, "alerts by type and severity"


# ------------------------------------------------------------------------------------------------ compose


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def flushwatch_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items()
            if any(str(w) == "flushwatch.cli" for w in svc.get("command", []))}


def volume_parts(entry: str | dict[str, Any]) -> tuple[str, str]:
    if isinstance(entry, dict):
        return str(entry["source"]), str(entry["target"])
    source, target = entry.split(":")[:2]
    return source, target


def test_compose_runs_kafka_in_kraft_mode() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].rsplit(":", 1)[1] in env["KAFKA_LISTENERS"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert not any("ZOOKEEPER" in key for key in env)


def test_compose_runs_every_role_through_the_real_cli() -> None:
    roles = {}
    for name, service in flushwatch_services().items():
        args = parse_role_argv(cli_tail(service["command"]))
        roles[args.command] = name
    assert set(roles) == ROLES


def test_compose_settings_are_flushwatch_settings_and_match_the_wiring() -> None:
    services = compose()["services"]
    kafka_env = {k: str(v) for k, v in services["kafka"]["environment"].items()}
    advertised = {url.split("://", 1)[1] for url in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in flushwatch_services().items():
        env = {k: str(v) for k, v in service["environment"].items()}
        assert all(k.startswith("FLUSHWATCH_") for k in env), name
        config = config_from(env)
        assert config.metrics.enabled and config.metrics.host == "0.0.0.0", f"{name}: metrics unreachable"
        assert config.kafka.bootstrap_servers and set(config.kafka.bootstrap_servers) <= advertised, name
        assert "kafka" in service["depends_on"], name
        health = " ".join(service["healthcheck"]["test"])
        assert f":{config.metrics.port}/healthz" in health, name
        assert seconds(service["stop_grace_period"]) >= required_stop_s(config), f"{name}: grace too short to drain"
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_compose_mounts_and_build_files_exist() -> None:
    doc = compose()
    base = COMPOSE.parent
    named = set(doc.get("volumes", {}))
    for name, service in doc["services"].items():
        for entry in service.get("volumes", []):
            source, _ = volume_parts(entry)
            if source.startswith((".", "/")):
                assert (base / source).resolve().exists(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in doc["services"], f"{name}: depends on unknown {dependency}"
        if "build" in service:
            context = (base / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file()


def test_dockerfile_copies_existing_files_and_bakes_in_no_settings() -> None:
    dockerfile = (DEPLOY / "compose" / "Dockerfile").read_text(encoding="utf-8")
    allowed = {line[1:].strip("/") for line in (DEPLOY / "compose" / "Dockerfile.dockerignore").read_text(
        encoding="utf-8").splitlines() if line.startswith("!")}
    sources = [word for line in re.findall(r"(?m)^COPY\s+(.+)$", dockerfile) for word in line.split()[:-1]]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source.strip("/") in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"
    # a FLUSHWATCH_* variable in the image would win over the settings of a mounted config file
    env = re.findall(r"(?m)^ENV\s.*$", dockerfile.replace("\\\n", " "))  # continuation lines joined
    assert env and not [line for line in env if "FLUSHWATCH_" in line]
    uid = re.search(r"(?m)^USER (\d+)", dockerfile)
    assert uid is not None and uid.group(1) != "0"


def test_prometheus_scrapes_each_compose_role_on_its_metrics_port() -> None:
    targets = {}
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        if job["job_name"] == "flushwatch":
            for static in job["static_configs"]:
                for target in static["targets"]:
                    targets[target] = static["labels"]["role"]
    expected = {}
    for name, service in flushwatch_services().items():
        config = config_from({k: str(v) for k, v in service["environment"].items()})
        expected[f"{name}:{config.metrics.port}"] = parse_role_argv(cli_tail(service["command"])).command
    assert targets == expected


def test_compose_mounts_prometheus_and_grafana_provisioning() -> None:
    services = compose()["services"]
    base = COMPOSE.parent
    prometheus = {(base / s).resolve(): t for s, t in map(volume_parts, services["prometheus"]["volumes"])}
    config_dir = prometheus[PROMETHEUS_CONFIG.parent]
    assert f"--config.file={config_dir}/{PROMETHEUS_CONFIG.name}" in services["prometheus"]["command"]
    grafana = {(base / s).resolve(): t for s, t in map(volume_parts, services["grafana"]["volumes"])}
    assert grafana[PROVISIONING] == "/etc/grafana/provisioning"
    providers = [p for path in (PROVISIONING / "dashboards").glob("*.y*ml") for p in load_yaml(path)["providers"]]
    assert [p["type"] for p in providers] == ["file"]
    assert Path(grafana[DASHBOARD]).parent == Path(providers[0]["options"]["path"])
    source = provisioned_datasource()
    assert source["type"] == "prometheus"
    url = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
    assert url is not None, source["url"]
    host, port = url.groups()
    assert host in services
    assert any(p.split(":")[-1] == port for p in services[host]["ports"])


# -------------------------------------------------------------------------------------------- Kubernetes


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in load_yaml_all(path)]


def deployments() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "Deployment"}


def k8s_config(tmp_path: Path) -> tuple[Config, str]:
    maps = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    assert len(maps) == 1
    (key, text), = maps[0]["data"].items()
    path = tmp_path / key
    path.write_text(text, encoding="utf-8")
    return config_from({}, path), maps[0]["metadata"]["name"]


def test_k8s_manifests_parse_and_are_listed_in_the_kustomization() -> None:
    kinds = sorted(o["kind"] for o in k8s_objects())
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Deployment", "Namespace", "Service"]
    namespace = next(o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "Namespace")
    for obj in k8s_objects():
        assert obj["apiVersion"] and obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization["namespace"] == namespace


def test_k8s_deployments_run_the_roles_with_the_configmap(tmp_path: Path) -> None:
    config, map_name = k8s_config(tmp_path)
    roles = set()
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = parse_role_argv(cli_tail(container["command"] + container.get("args", [])))
        roles.add(args.command)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        mount_path = str(Path(args.config).parent)
        assert volumes[mounts[mount_path]]["configMap"]["name"] == map_name, name
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        assert config_from(env, tmp_path / Path(args.config).name).metrics == config.metrics, name
        assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
            "labels"].items(), name
        if args.command == "sink":
            assert mounts[config.sink.state_dir] in volumes, "sink.state_dir must be a writable volume"
    assert roles == ROLES


def test_k8s_probes_and_scraping_use_the_configured_metrics_port(tmp_path: Path) -> None:
    config, _ = k8s_config(tmp_path)
    assert config.metrics.enabled and config.metrics.host == "0.0.0.0"
    for name, deployment in deployments().items():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}

        def port_of(probe: dict[str, Any], ports: dict[str, int] = ports) -> int:
            port = probe["httpGet"]["port"]
            return ports[port] if isinstance(port, str) else int(port)

        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert port_of(container[probe]) == config.metrics.port, f"{name}: {probe}"
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(config.metrics.port), name
    (service,) = [o for o in k8s_objects() if o["kind"] == "Service"]
    assert service["spec"]["publishNotReadyAddresses"] is True
    for deployment in deployments().values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == config.metrics.port
    for monitor in load_yaml_all(K8S / "prometheus-operator" / "podmonitor.yaml"):
        assert monitor["kind"] == "PodMonitor"
        for deployment in deployments().values():
            assert monitor["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
                "labels"].items()
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics"}


def test_k8s_resources_grace_period_and_rollout(tmp_path: Path) -> None:
    config, _ = k8s_config(tmp_path)
    dockerfile = (DEPLOY / "compose" / "Dockerfile").read_text(encoding="utf-8")
    user = re.search(r"(?m)^USER (\d+)", dockerfile)
    assert user is not None, "the image runs as a numeric non-root USER"
    image_uid = int(user.group(1))
    by_role = {}
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        by_role[parse_role_argv(cli_tail(container["command"] + container["args"])).command] = deployment
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: resources.{kind}"
        assert pod["terminationGracePeriodSeconds"] >= required_stop_s(config), f"{name}: grace too short to drain"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == image_uid
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
    ingest = by_role["ingest"]["spec"]
    assert ingest["replicas"] == 1 and ingest["strategy"]["type"] == "Recreate", "two ingest pods duplicate events"
    assert by_role["process"]["spec"]["replicas"] <= config.kafka.partitions


# ------------------------------------------------------------------------------------------------ systemd


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting, in order (keys repeat in unit files)."""
    entries, section = [], ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_value(key: str) -> str:
    values = [v for _, k, v in unit_entries() if k == key]
    assert values, f"{UNIT.name}: no {key}="
    return values[-1]


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_systemd_unit_runs_each_role_through_the_real_cli() -> None:
    argv = shlex.split(unit_value("ExecStart"))
    tail = cli_tail(argv)
    assert tail[0] == "%i", "one instance per role: the subcommand is the instance name"
    for role in sorted(ROLES):
        assert parse_role_argv([role if w == "%i" else w for w in tail]).command == role
    assert unit_value("Restart") == "on-failure"
    assert unit_value("KillSignal") == "SIGTERM"


def test_systemd_stop_timeout_and_settings(tmp_path: Path) -> None:
    example = DEPLOY / "systemd" / "flushwatch.toml"
    ports = set()
    for role in sorted(ROLES):
        env = {k: v.replace("%S", "/var/lib").replace("%i", role) for k, v in
               (item.split("=", 1) for _, key, item in unit_entries() if key == "Environment")}
        env.pop("FLUSHWATCH_CONFIG")  # the example file stands in for it
        env.update(env_file(DEPLOY / "systemd" / f"{role}.env"))
        config = config_from({k: v for k, v in env.items() if k.startswith("FLUSHWATCH_")}, example)
        ports.add(config.metrics.port)
        assert seconds(unit_value("TimeoutStopSec")) >= required_stop_s(config), "TimeoutStopSec too short to drain"
        assert config.sink.state_dir is not None and config.sink.state_dir.startswith(
            "/var/lib/" + unit_value("StateDirectory").replace("%i", role)), "sink state must be in StateDirectory"
    assert len(ports) == len(ROLES), "the roles share a host: each needs its own metrics port"
    assert "%i.env" in unit_value("EnvironmentFile")


def test_systemd_unit_is_hardened() -> None:
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": ""}
    assert {key: unit_value(key) for key in expected} == expected
    assert unit_value("User") not in ("", "root")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    shutil.copy(UNIT, tmp_path / UNIT.name)
    result = run([tool, "verify", "--man=no", "./flushwatch@ingest.service"], cwd=tmp_path)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]  # /opt/flushwatch is not installed here
    assert complaints == []


# ------------------------------------------------------------------------------------------------ the CLI


def test_python_m_flushwatch_cli_offers_the_roles() -> None:
    result = run([sys.executable, "-m", "flushwatch.cli", "--help"])
    assert result.returncode == 0, result.stderr
    offered = set(re.findall(r"(?m)^\s{4}(\w+)\s", result.stdout))
    assert offered >= ROLES, result.stdout


def test_the_cli_check_rejects_unknown_subcommands_and_flags() -> None:
    with pytest.raises(pytest.fail.Exception):
        parse_role_argv(["ingestor"])
    with pytest.raises(pytest.fail.Exception):
        parse_role_argv(["sink", "--metrics-prot", "1"])
    assert parse_role_argv(["ingest", "--metrics-port", "9464"]).metrics_port == 9464
