"""The collector's YAML configuration: pydantic models with defaults, and loading with clear errors.

Every section has defaults, so no file at all (or an empty one) gives a working collector: the
store `cognocient.db` in the working folder and the ports of DESIGN.md on 127.0.0.1. Unknown keys
are refused (a typo must not silently fall back to a default). A bad file raises `ConfigError`
whose message names the field and the problem; `cognocient-collector` prints it and exits 2.

The top-level `budgets:` (a list) and `waste:` (a mapping) sections are validated by their own
parts' models, `collector/budgets/config.py` and `collector/waste/config.py`, imported below as
`BudgetsSection` and `WasteSection`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cognocient_otel.pricing import PriceOverride
from collector.budgets.config import BudgetsSection  # issue 4's `budgets:` section, validated there
from collector.waste.config import WasteConfig as WasteSection  # issue 5's `waste:` section


class ConfigError(ValueError):
    """The configuration file is missing, not YAML, or has a field with a bad value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_endpoint(value: str) -> str:
    host, separator, port = value.rpartition(":")
    # ASCII digits only: str.isdigit() also takes other scripts' digits and superscripts.
    if (not separator or not host or not (port.isascii() and port.isdigit()) or len(port) > 5
            or not 0 <= int(port) <= 65535):
        raise ValueError(
            f"must be host:port with a port from 0 to 65535 (0 picks a free port), got {value!r}"
        )
    try:  # what the resolver will do with it: a name too long, a NUL... fail here, not at start
        host.strip("[]").encode("idna")
    except UnicodeError as error:
        raise ValueError(f"host {host[:80]!r} is not a host name or address: {error}") from None
    if "\0" in host:
        raise ValueError("the host name contains a NUL character")
    return value


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


class GrpcReceiverConfig(_Section):
    endpoint: str = "127.0.0.1:4317"
    max_recv_msg_size_mib: int = Field(16, gt=0, le=1024)
    max_workers: int = Field(16, gt=0, le=256)

    _endpoint = field_validator("endpoint")(_check_endpoint)


class HttpReceiverConfig(_Section):
    endpoint: str = "127.0.0.1:4318"
    max_request_body_mib: int = Field(16, gt=0, le=1024)
    read_timeout_seconds: float = Field(10.0, gt=0, le=3600)

    _endpoint = field_validator("endpoint")(_check_endpoint)


class OtlpReceiverConfig(_Section):
    grpc: GrpcReceiverConfig = GrpcReceiverConfig()
    http: HttpReceiverConfig = HttpReceiverConfig()
    # Processes that decode large protobuf requests (collector/decode_pool.py); auto (default): one
    # per usable core, at most 2, none on a single core; 0: decode on the receiver threads (one
    # core for all of ingest, ~25 % less CPU per span, ~45 MB less memory).
    decode_workers: int | str = "auto"

    @field_validator("decode_workers", mode="before")
    @classmethod
    def _decode_workers(cls, value: Any) -> Any:
        if value == "auto" or (value.__class__ is int and 0 <= value <= 64):
            return value
        raise ValueError(f"must be 'auto' or a whole number from 0 to 64, got {value!r}")


class ReceiversConfig(_Section):
    otlp: OtlpReceiverConfig = OtlpReceiverConfig()


class PrometheusConfig(_Section):
    endpoint: str = "127.0.0.1:9464"
    max_run_series: int = Field(500, ge=0, le=100_000)

    _endpoint = field_validator("endpoint")(_check_endpoint)


class StoreConfig(_Section):
    path: str = "cognocient.db"
    # normal: a commit survives the process being killed; full: it also survives power loss.
    synchronous: Literal["normal", "full"] = "normal"

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a file path, got an empty string")
        if "\0" in value:
            raise ValueError("must be a file path, got one with a NUL character")
        return value


class RunsConfig(_Section):
    # Upper bounds: beyond them a value is a typo (or .inf) that would overflow a timer later.
    idle_timeout_seconds: float = Field(900, gt=0, le=366 * 86400)
    retention_days: float = Field(30, gt=0, le=36_600)
    # Ended runs stay in memory (per-run gauge, cheap reads) this long; older ones live in the store.
    keep_ended_seconds: float = Field(3600, ge=0, le=366 * 86400)


class IngestConfig(_Section):
    queue_size: int = Field(64, gt=0, le=100_000)  # export requests waiting for the writer
    max_group_requests: int = Field(64, gt=0, le=10_000)  # requests committed in one transaction
    retry_after_seconds: int = Field(1, gt=0, le=3600)
    ack_timeout_seconds: float = Field(30, gt=0, le=3600)


class PriceOverrideConfig(_Section):
    model: str = Field(min_length=1)
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cache_read_per_mtok: Decimal | None = Field(None, ge=0)
    cache_write_per_mtok: Decimal | None = Field(None, ge=0)
    provider: str | None = None

    def to_override(self) -> PriceOverride:
        return PriceOverride(
            model=self.model, input_per_mtok=self.input_per_mtok, output_per_mtok=self.output_per_mtok,
            cache_read_per_mtok=self.cache_read_per_mtok, cache_write_per_mtok=self.cache_write_per_mtok,
            provider=self.provider,
        )


class PricingConfig(_Section):
    overrides: list[PriceOverrideConfig] = []


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class CollectorConfig(_Section):
    receivers: ReceiversConfig = ReceiversConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    store: StoreConfig = StoreConfig()
    runs: RunsConfig = RunsConfig()
    pricing: PricingConfig = PricingConfig()
    ingest: IngestConfig = IngestConfig()
    log: LogConfig = LogConfig()
    budgets: BudgetsSection = []
    waste: WasteSection = WasteSection()


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and nesting)"
        problems.append(f"{location}: {message}")
    return f"invalid configuration in {source}: " + "; ".join(problems)


def parse_config(data: Any, *, source: str = "<config>") -> CollectorConfig:
    """Validate an already-parsed YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping of sections")
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last one
    silently, so a second `budgets:` would drop the first list of budgets without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: overriding those is fine
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class says so
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} is given twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None) -> CollectorConfig:
    """The configuration in the YAML file `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return CollectorConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {str(path)!r} is not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {str(path)!r} is not valid YAML: {error}") from None
    except RecursionError:
        raise ConfigError(f"configuration file {str(path)!r} is nested too deeply to read") from None
    except ValueError as error:  # PyYAML's constructors, e.g. an int of more digits than Python reads
        raise ConfigError(
            f"configuration file {str(path)!r} has a value that cannot be read: {error}"
        ) from None
    return parse_config(data, source=str(path))
