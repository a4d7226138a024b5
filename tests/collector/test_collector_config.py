"""Configuration files under tests/testdata/collector/: good ones load, bad ones name the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from collector.config import CollectorConfig, ConfigError, load_config

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "collector"


def test_no_file_gives_the_embedded_defaults() -> None:
    config = load_config(None)
    assert config.receivers.otlp.grpc.endpoint == "127.0.0.1:4317"
    assert config.receivers.otlp.http.endpoint == "127.0.0.1:4318"
    assert config.prometheus.endpoint == "127.0.0.1:9464"
    assert config.store.path == "cognocient.db"
    assert config.runs.idle_timeout_seconds == 900
    assert config.runs.retention_days == 30
    assert config.receivers.otlp.decode_workers == "auto"
    assert config == CollectorConfig()


def test_empty_file_is_the_defaults() -> None:
    assert load_config(TESTDATA / "empty.yaml") == CollectorConfig()


def test_the_issue_example_loads() -> None:
    config = load_config(TESTDATA / "issue_example.yaml")
    assert config.receivers.otlp.grpc.max_recv_msg_size_mib == 16
    assert config.prometheus.max_run_series == 500
    override = config.pricing.overrides[0].to_override()
    assert (override.model, override.input_per_mtok, override.output_per_mtok) == (
        "my-finetune",
        Decimal("3.0"),
        Decimal("12.0"),
    )


def test_every_field_is_read() -> None:
    config = load_config(TESTDATA / "full.yaml")
    assert config.receivers.otlp.grpc.max_workers == 4
    assert config.receivers.otlp.http.read_timeout_seconds == 5
    assert config.receivers.otlp.decode_workers == 2
    assert config.prometheus.max_run_series == 50
    assert config.store.synchronous == "full"
    assert config.runs.keep_ended_seconds == 120
    assert config.ingest.queue_size == 16
    assert config.pricing.overrides[1].provider == "self-hosted"
    assert config.pricing.overrides[1].cache_read_per_mtok == Decimal("0.05")
    assert config.log.format == "text"


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("bad_endpoint.yaml", ["receivers.otlp.grpc.endpoint", "host:port"]),
        ("bad_port.yaml", ["prometheus.endpoint", "0 to 65535"]),
        ("bad_unknown_field.yaml", ["store.paht", "unknown field"]),
        ("bad_negative_price.yaml", ["pricing.overrides.0.input_per_mtok", "greater than or equal to 0"]),
        ("bad_missing_price.yaml", ["pricing.overrides.0.output_per_mtok", "Field required"]),
        ("bad_type.yaml", ["runs.idle_timeout_seconds", "valid number"]),
        ("bad_yaml.yaml", ["not valid YAML"]),
        ("bad_top_level.yaml", ["top level must be a mapping"]),
        ("bad_queue.yaml", ["ingest.queue_size", "greater than 0"]),
        ("bad_decode_workers.yaml", ["receivers.otlp.decode_workers", "'auto' or a whole number", "'lots'"]),
    ],
)
def test_bad_files_name_the_field_and_the_problem(name: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(TESTDATA / name)
    message = str(raised.value)
    assert name in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(("text", "fragments"), [
    ("ingest: {ack_timeout_seconds: .inf}", ["ingest.ack_timeout_seconds", "less than or equal to 3600"]),
    ("receivers: {otlp: {http: {read_timeout_seconds: 1e10}}}",
     ["receivers.otlp.http.read_timeout_seconds", "less than or equal to 3600"]),
    ("runs: {idle_timeout_seconds: .inf}", ["runs.idle_timeout_seconds", "less than or equal to"]),
    ("waste: " + "[" * 2000 + "]" * 2000, ["nested too deeply"]),
    ("prometheus: {max_run_series: " + "9" * 5000 + "}", ["has a value that cannot be read"]),
    ('store: {path: "a\\0b.db"}', ["store.path", "NUL"]),
    ("budgets: [{name: a, scope: global, monthly_limit_usd: 1}]\nbudgets: []", ["'budgets' is given twice"]),
    ("store: {path: a.db, path: b.db}", ["'path' is given twice"]),
    (f'prometheus: {{endpoint: "{"a" * 300}:0"}}', ["prometheus.endpoint", "not a host name"]),
    ('receivers: {otlp: {grpc: {endpoint: "127.0.0.1:\u0664\u0663\u0661\u0667"}}}',
     ["receivers.otlp.grpc.endpoint", "0 to 65535"]),
])
def test_values_that_would_fail_later_are_refused_at_load(tmp_path: Path, text: str, fragments: list) -> None:
    # Each of these loaded, then broke every export, every HTTP connection or the start, with a
    # traceback and exit 1 instead of a message naming the field and exit 2.
    path = tmp_path / "collector.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_yaml_merge_keys_still_work_and_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(
        "x-defaults: &grpc {endpoint: 127.0.0.1:0, max_workers: 4}\n"
        "receivers: {otlp: {grpc: {<<: *grpc, max_workers: 8}}}\n"
    )
    with pytest.raises(ConfigError, match="x-defaults"):  # unknown top-level section, as before
        load_config(path)
    path.write_text("runs: &r {idle_timeout_seconds: 60}\nstore: {path: a.db}\n"
                    "ingest: {<<: {queue_size: 8, max_group_requests: 4}, queue_size: 16}\n")
    config = load_config(path)
    assert config.ingest.queue_size == 16 and config.ingest.max_group_requests == 4


def test_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(TESTDATA / "no-such-file.yaml")
