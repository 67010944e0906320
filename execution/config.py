"""Typed, frozen, validated configuration of the engine.

Usage::

    from execution.config import load_config
    cfg = load_config("config/strategy_config.json")   # raises ConfigError on bad input
    cfg.diagnostics.liveness.max_idle_signals_seconds  # 600

Every section is a frozen dataclass whose defaults equal the shipped
``config/strategy_config.json``. Validation happens once, at load: an unknown
key, a wrong type or an impossible value raises :class:`ConfigError` whose
message names the key path and what was expected.

Every number has a finite range the engine can compute with (the ``MAX_*`` limits below): a
config, a CSV or a flag beyond it is refused at the edge with one line, never met mid-run.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import stat
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Optional, Tuple

from execution.clock import EARLIEST_SECONDS, LATEST_SECONDS, iso_seconds, iso_z, on_calendar
from execution.diagnostics_document import LIVENESS_CHECKS, MAX_PUBLISH_INTERVAL_SECONDS, SYMBOL_CHECKS, describe
from execution.files import file_kind, open_for_reading

DEFAULT_CONFIG_PATH = os.path.join("config", "strategy_config.json")

# -- limits: the ranges the engine computes with, checked once at the edge ------------------------
MAX_CYCLES = 1_000_000              # bars in one run: 1.9 years of minute bars, about half an hour of replay
MAX_BAR_SECONDS = 86_400            # the longest bar, a day
MAX_USDT = 1e12                     # any amount of money
MIN_PCT = 1e-6                      # the smallest take-profit / stop-loss fraction (sizing divides by it)
MAX_WINDOW_BARS = 10_000            # EMA and volatility windows
MAX_DURATION_SECONDS = 31_536_000   # 365 days: cooldowns and liveness thresholds
MAX_POSITIONS = 10_000
MAX_TWAP_SLICES = 1_000
MAX_RETRIES = 100
MAX_CONFIG_BYTES = 1024 * 1024      # the shipped config is 1 KiB
MAX_SEED = 2 ** 64 - 1              # --seed: 64 bits, carried by diagnostics.json and read back exactly
MAX_PATH_BYTES = 4096               # PATH_MAX on Linux: no longer path names a file


class ConfigError(ValueError):
    """Bad configuration: the message names the key path and what was expected."""


def _positive(v: float) -> Optional[str]:
    return None if v > 0 else "a number > 0"


def _non_negative(v: float) -> Optional[str]:
    return None if v >= 0 else "a number >= 0"


def _fraction(v: float) -> Optional[str]:
    return None if 0 <= v <= 1 else "a number between 0 and 1"


def _at_least_one(v: int) -> Optional[str]:
    return None if v >= 1 else "an integer >= 1"


def _at_most(limit: float, expected: str) -> Callable[[float], Optional[str]]:
    return lambda v: None if v <= limit else expected


def _all(*checks: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    """The first failing check's expectation, or None."""
    return lambda v: next((e for e in (check(v) for check in checks) if e), None)


_usdt = _at_most(MAX_USDT, f"at most {MAX_USDT:.0e} USDT")
_bars = _at_most(MAX_WINDOW_BARS, f"at most {MAX_WINDOW_BARS} bars")
_duration = _at_most(MAX_DURATION_SECONDS, f"at most {MAX_DURATION_SECONDS} seconds (365 days)")
_positions = _at_most(MAX_POSITIONS, f"at most {MAX_POSITIONS} positions")
_slices = _at_most(MAX_TWAP_SLICES, f"at most {MAX_TWAP_SLICES} slices")
_retries = _at_most(MAX_RETRIES, f"at most {MAX_RETRIES} retries")
_bar_length = _at_most(MAX_BAR_SECONDS, f"at most {MAX_BAR_SECONDS} seconds (a day)")
_publish_interval = _at_most(MAX_PUBLISH_INTERVAL_SECONDS, f"at most {MAX_PUBLISH_INTERVAL_SECONDS:g} seconds "
                             "(the longest a diagnostics.json reader trusts)")


def _pct(example: str) -> Callable[[float], Optional[str]]:
    return lambda v: None if MIN_PCT <= v < 1 else f"a fraction from {MIN_PCT:g} to below 1 ({example})"


def _threshold(v: Optional[float]) -> Optional[str]:
    if v is None or 0 <= v <= MAX_DURATION_SECONDS:
        return None
    if v < 0:
        return "a number of seconds >= 0, or null to disable the check"
    return f"at most {MAX_DURATION_SECONDS} seconds (365 days), or null to disable the check"


def _symbols(v: Tuple[str, ...]) -> Optional[str]:
    ok = v and len(set(v)) == len(v) and all(s and s == s.strip() for s in v)
    return None if ok else "a non-empty list of distinct, non-blank symbols"


def _check(fn: Callable[[Any], Optional[str]], default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with a validator that returns what was expected, or None when fine."""
    if default is dataclasses.MISSING:
        return field(metadata={"check": fn}, **kw)
    return field(default=default, metadata={"check": fn}, **kw)


DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT")


@dataclass(frozen=True)
class StrategyConfig:
    symbols: Tuple[str, ...] = _check(_symbols, DEFAULT_SYMBOLS)
    fast_ema_bars: int = _check(_all(_at_least_one, _bars), 2)
    slow_ema_bars: int = _check(_all(_at_least_one, _bars), 5)
    volatility_window_bars: int = _check(_all(lambda v: None if v >= 2 else "an integer >= 2", _bars), 20)
    min_volatility: float = _check(_fraction, 0.0002)
    risk_per_trade_usdt: float = _check(_all(_positive, _usdt), 6.0)
    take_profit_pct: float = _check(_pct("0.008 = 0.8%"), 0.006)
    stop_loss_pct: float = _check(_pct("0.006 = 0.6%"), 0.004)
    allow_short: bool = True


@dataclass(frozen=True)
class RiskConfig:
    max_concurrent_positions: int = _check(_all(_at_least_one, _positions), 5)
    max_gross_exposure_usdt: float = _check(_all(_positive, _usdt), 6000.0)
    per_symbol_cap_usdt: float = _check(_all(_positive, _usdt), 1800.0)
    min_notional_usdt: float = _check(_all(_non_negative, _usdt), 750.0)
    max_order_notional_usdt: float = _check(_all(_positive, _usdt), 2500.0)
    cooldown_after_exit_seconds: float = _check(_all(_non_negative, _duration), 300.0)
    daily_loss_limit_usdt: float = _check(_all(_positive, _usdt), 2000.0)


@dataclass(frozen=True)
class RouterConfig:
    twap_threshold_usdt: float = _check(_all(_positive, _usdt), 900.0)
    twap_slices: int = _check(_all(_at_least_one, _slices), 3)
    max_retries: int = _check(_all(lambda v: None if v >= 0 else "an integer >= 0", _retries), 2)


@dataclass(frozen=True)
class ExchangeConfig:
    fee_rate: float = _check(_fraction, 0.0004)
    slippage_bps: float = _check(lambda v: None if 0 <= v <= 10_000 else "basis points between 0 and 10000", 2.0)
    transient_reject_probability: float = _check(_fraction, 0.03)


@dataclass(frozen=True)
class MarketDataConfig:
    bar_seconds: int = _check(_all(_at_least_one, _bar_length), 60)
    start: str = _check(lambda v: None if _parse_start(v) is not None else "an ISO-8601 UTC time such as 2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z")

    def __post_init__(self) -> None:
        # The longest run (MAX_CYCLES bars) must end on the calendar the journal can write.
        start = _parse_start(self.start)
        if start is None or not 1 <= self.bar_seconds <= MAX_BAR_SECONDS:
            return  # a bad field on its own; the field checks name it
        latest = LATEST_SECONDS - MAX_CYCLES * self.bar_seconds
        if not on_calendar(start, latest):
            raise ConfigError(f"market_data.start: expected a time from {iso_z(EARLIEST_SECONDS)} to {iso_z(latest)} "
                              f"(so that {MAX_CYCLES} bars of {self.bar_seconds} s end by {iso_z(LATEST_SECONDS)}), "
                              f"got {describe(self.start)}")

    @property
    def start_epoch(self) -> float:
        """The first bar's open time, Unix seconds."""
        value = _parse_start(self.start)
        assert value is not None  # validated at load
        return value


def _parse_start(text: str) -> Optional[float]:
    try:
        return iso_seconds(text)
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class TelemetryConfig:
    service_name: str = _check(lambda v: None if v.strip() else "a non-empty service name", "executor")
    deployment_environment: str = "paper"
    jaeger_ui_url: Optional[str] = None
    prometheus_port: Optional[int] = _check(lambda v: None if v is None or 0 <= v <= 65535 else "a TCP port 0..65535 or null", None)
    prometheus_host: str = "127.0.0.1"
    # The table of targets otel_diag patches (module:TABLE or a .toml/.json file; otel_diag.targets); null: the
    # OTEL_DIAG_TARGETS setting, else the shipped engine's table. It is loaded when telemetry starts: a table
    # that cannot be used is a warning there, not a config error.
    targets: Optional[str] = _check(lambda v: None if v is None or v.strip() else "a module:TABLE reference, a "
                                    ".toml/.json path, or null", None)


@dataclass(frozen=True)
class VetoMetricsConfig:
    enabled: bool = True


@dataclass(frozen=True)
class ExitPipelineConfig:
    enabled: bool = True


# liveness key of runtime_diagnostics -> its threshold field below (the document model maps them)
LIVENESS_THRESHOLD_FIELDS = {check.key: check.threshold_field for check in LIVENESS_CHECKS}
# per-symbol check of runtime_diagnostics.liveness -> its threshold field below
SYMBOL_THRESHOLD_FIELDS = {check.key: check.threshold_field for check in SYMBOL_CHECKS}


@dataclass(frozen=True)
class LivenessConfig:
    """The spec's liveness thresholds (seconds); None or 0 disables one check."""

    enabled: bool = True
    max_idle_signals_seconds: Optional[float] = _check(_threshold, 600)
    max_idle_orders_seconds: Optional[float] = _check(_threshold, 1200)
    max_idle_exits_seconds: Optional[float] = _check(_threshold, 3600)
    max_idle_router_events_seconds: Optional[float] = _check(_threshold, 1800)
    max_idle_exit_scans_seconds: Optional[float] = _check(_threshold, 120)
    # Per symbol of strategy.symbols (docs/v7.6_Runtime_Diagnostics.md, "Per-symbol market data"): no bar for
    # 3 bars of 1 minute, or the same close for 10 bars. A healthy market of 1-minute bars trips neither.
    max_symbol_data_age_seconds: Optional[float] = _check(_threshold, 180)
    max_symbol_price_frozen_seconds: Optional[float] = _check(_threshold, 600)


@dataclass(frozen=True)
class DiagnosticsConfig:
    enabled: bool = True
    publish_interval_seconds: float = _check(_all(_positive, _publish_interval), 60.0)
    veto_metrics: VetoMetricsConfig = field(default_factory=VetoMetricsConfig)
    exit_pipeline: ExitPipelineConfig = field(default_factory=ExitPipelineConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)


@dataclass(frozen=True)
class AppConfig:
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    market_data: MarketDataConfig = field(default_factory=MarketDataConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        if self.strategy.fast_ema_bars >= self.strategy.slow_ema_bars:
            raise ConfigError("strategy.fast_ema_bars: expected fewer bars than strategy.slow_ema_bars")


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the dataclass's form."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected an object, got {_json_type(value)}")
        return _build(tp, value, path)
    if origin in (tuple, Tuple):
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_json_type(value)}")
        return tuple(_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_json_type(value)}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected {_TYPE_NAMES[tp]}, got {_json_type(value)}")
        if tp is int and not (isinstance(value, int) or float(value).is_integer()):
            raise ConfigError(f"{path}: expected an integer, got {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {_shown(value)}")
        try:
            return tp(value)
        except OverflowError:  # an integer beyond float range, for a float key
            raise ConfigError(f"{path}: expected a finite number, got {_shown(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_json_type(value)}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # pragma: no cover - a programming error


def _shown(value: Any) -> str:
    """The bad value, short and on one line (as the document reader shows values: ``describe``)."""
    if isinstance(value, list):
        return "[" + ", ".join(describe(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    return describe(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _build(cls: type, data: dict, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{where}: unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        key_path = f"{path}.{name}" if path else name
        coerced = _coerce(value, hints[name], key_path)
        check = fields[name].metadata.get("check")
        if check is not None and coerced is not None:
            expected = check(coerced)
            if expected:
                raise ConfigError(f"{key_path}: expected {expected}, got {_shown(value)}")
        kwargs[name] = coerced
    return cls(**kwargs)


def config_from_dict(data: Any) -> AppConfig:
    """Validate a parsed JSON document into an :class:`AppConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a JSON object at the top level, got {_json_type(data)}")
    return _build(AppConfig, data, "")


def load_config(path: Optional[str] = None) -> AppConfig:
    """Load and validate the JSON config at ``path`` (built-in defaults when None)."""
    if path is None:
        return AppConfig()
    where = shown_path(path)
    try:
        with open_regular_file(path) as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read config ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: config larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: config is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError:  # an integer literal beyond int_max_str_digits
        raise ConfigError(f"{where}: invalid JSON: a number of more than {sys.get_int_max_str_digits()} digits") from None
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _refuse_unless_regular(info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, f"{file_kind(info.st_mode)}, not a regular file")


def open_regular_file(path: str) -> BinaryIO:
    """Open ``path`` for reading in binary; OSError unless it is a regular file.

    Checked before it is opened, so a FIFO with no writer cannot hang the start and a device
    (``/dev/zero`` never ends) is never opened; a FIFO, a device or a folder is refused.
    """
    fd = open_for_reading(path, _refuse_unless_regular)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def shown_path(path: str) -> str:
    """A path for a one-line message: as given, unless it is huge or holds a line break."""
    return path if len(path) <= 256 and path.isprintable() else describe(path)
