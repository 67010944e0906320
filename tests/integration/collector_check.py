"""Structural checks of an OpenTelemetry Collector config, for when no otelcol binary is at hand.

A test helper (used by ``tests/integration/test_collector_config.py``), not part of the product.

Usage::

    from tests.integration.collector_check import check_collector_config, load_collector_config
    problems = check_collector_config(load_collector_config("collector/otelcol-config.yaml"))
    assert not problems, "\\n".join(problems)

It finds what ``otelcol validate`` would refuse and what it would let through but we
don't want: a pipeline naming an undefined component; a listening endpoint that binds
every interface (``0.0.0.0``, ``::``, a bare ``:port``) or has no explicit default;
``memory_limiter`` not first or ``batch`` not last among a pipeline's processors; a
secret (a header, a token, a password) written literally instead of ``${env:NAME}``.
Environment references resolve to their ``${env:NAME:-default}`` default, as an
unset variable would at start-up.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
PIPELINE_TYPES = ("traces", "metrics", "logs", "profiles")
FIRST_PROCESSOR = "memory_limiter"
LAST_PROCESSOR = "batch"

# ${env:NAME} or ${env:NAME:-default}
ENV_REF = re.compile(r"\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_KEY = re.compile(
    r"^(authorization|proxy-authorization|api[_-]?key|x-api-key|(access|auth|bearer|api)?[_-]?token|"
    r"password|passwd|secret|client[_-]?secret)$",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"^\s*(Bearer|Basic|Token|ApiKey)?\s*$", re.IGNORECASE)
_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]", "*")
_NO_DEFAULT = object()


def load_collector_config(path: str) -> Mapping[str, Any]:
    """Parse the Collector YAML at ``path`` (needs pyyaml)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def resolve_env_default(value: Any) -> Any:
    """``value`` with each ``${env:NAME:-default}`` replaced by its default; ``_NO_DEFAULT`` if one has none."""
    if not isinstance(value, str):
        return value
    missing = False

    def _default(match: "re.Match[str]") -> str:
        nonlocal missing
        if match.group("default") is None:
            missing = True
            return ""
        return match.group("default")

    resolved = ENV_REF.sub(_default, value)
    return _NO_DEFAULT if missing else resolved


def component_type(component_id: str) -> str:
    """``otlp/jaeger`` → ``otlp``."""
    return component_id.split("/", 1)[0]


def check_collector_config(config: Mapping[str, Any]) -> List[str]:
    """Every problem found in a parsed Collector config, one readable line each (empty = fine)."""
    problems: List[str] = []
    problems += _check_references(config)
    problems += _check_processor_order(config)
    problems += _check_bind_addresses(config)
    problems += _check_secrets(config)
    return problems


# -- references -------------------------------------------------------------------------
def _defined(config: Mapping[str, Any], section: str) -> set:
    block = config.get(section) or {}
    return set(block) if isinstance(block, Mapping) else set()


def _check_references(config: Mapping[str, Any]) -> List[str]:
    problems = []
    defined = {section: _defined(config, section) for section in SECTIONS}
    service = config.get("service") or {}
    for name in service.get("extensions") or []:
        if name not in defined["extensions"]:
            problems.append(f"service.extensions: {name!r} is not defined under extensions")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: no pipeline is defined")
    for pipeline, spec in pipelines.items():
        where = f"service.pipelines.{pipeline}"
        if component_type(str(pipeline)) not in PIPELINE_TYPES:
            problems.append(f"{where}: unknown signal type (expected one of {', '.join(PIPELINE_TYPES)})")
        spec = spec or {}
        for role, sections in (("receivers", ("receivers", "connectors")),
                               ("processors", ("processors",)),
                               ("exporters", ("exporters", "connectors"))):
            names = spec.get(role) or []
            if role != "processors" and not names:
                problems.append(f"{where}.{role}: a pipeline needs at least one")
            for name in names:
                if not any(name in defined[s] for s in sections):
                    problems.append(f"{where}.{role}: {name!r} is not defined under {' or '.join(sections)}")
    return problems


def _check_processor_order(config: Mapping[str, Any]) -> List[str]:
    problems = []
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    for pipeline, spec in pipelines.items():
        processors = [component_type(str(p)) for p in ((spec or {}).get("processors") or [])]
        where = f"service.pipelines.{pipeline}.processors"
        if not processors or processors[0] != FIRST_PROCESSOR:
            problems.append(f"{where}: {FIRST_PROCESSOR} must come first, got {processors}")
        if not processors or processors[-1] != LAST_PROCESSOR:
            problems.append(f"{where}: {LAST_PROCESSOR} must come last, got {processors}")
    return problems


# -- bind addresses ---------------------------------------------------------------------
def _walk(node: Any, path: str) -> Iterator[Tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry under ``node``."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            yield here, str(key), value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _host_of(endpoint: str) -> Optional[str]:
    """The host part of ``host:port`` or a URL; None when it has no port (not an address)."""
    text = endpoint.strip()
    if "://" in text:
        return urlsplit(text).hostname or ""
    if text.startswith("["):  # [::1]:4317
        host, _, _port = text.rpartition(":")
        return host
    if ":" not in text:
        return None
    host, _, _port = text.rpartition(":")
    return host


def _check_endpoint(where: str, raw: Any) -> Optional[str]:
    value = resolve_env_default(raw)
    if value is _NO_DEFAULT:
        return f"{where}: {raw!r} has no default (write ${{env:NAME:-127.0.0.1:PORT}}); an unset variable leaves the component's built-in default"
    host = _host_of(str(value))
    if host is not None and host in _WILDCARD_HOSTS:
        shown = raw if raw == value else f"{raw!r} (default {value!r})"
        return f"{where}: binds every interface by default: {shown}; bind 127.0.0.1 and open it through ${{env:...}}"
    return None


def _check_bind_addresses(config: Mapping[str, Any]) -> List[str]:
    problems = []
    for section in ("receivers", "extensions", "exporters"):
        for path, key, value in _walk(config.get(section) or {}, section):
            if key == "endpoint" and isinstance(value, str):
                problem = _check_endpoint(path, value)
                if problem:
                    problems.append(problem)
    # A receiver protocol without an endpoint listens on its built-in default.
    for name, receiver in (config.get("receivers") or {}).items():
        for proto, spec in ((receiver or {}).get("protocols") or {}).items():
            if not isinstance(spec, Mapping) or "endpoint" not in spec:
                problems.append(f"receivers.{name}.protocols.{proto}: no endpoint; set it explicitly to 127.0.0.1:PORT")
    telemetry = (config.get("service") or {}).get("telemetry") or {}
    for path, key, value in _walk(telemetry, "service.telemetry"):
        if key == "host":
            resolved = resolve_env_default(value)
            if resolved is _NO_DEFAULT or str(resolved) in _WILDCARD_HOSTS:
                problems.append(f"{path}: {value!r} binds every interface by default; use 127.0.0.1")
        elif key == "address" and isinstance(value, str):
            problem = _check_endpoint(path, value)
            if problem:
                problems.append(problem)
    return problems


# -- secrets ----------------------------------------------------------------------------
def _secret_problem(where: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value)
    refs = list(ENV_REF.finditer(text))
    if not refs:
        return f"{where}: secret written literally (value not shown); use ${{env:NAME}}"
    if any(ref.group("default") for ref in refs):
        return f"{where}: secret has a literal default (value not shown); use ${{env:NAME}} with no default"
    if not _AUTH_SCHEME.match(ENV_REF.sub("", text)):
        return f"{where}: literal text around the ${{env:...}} reference (value not shown); keep the secret whole in the variable"
    return None


def _check_secrets(config: Mapping[str, Any]) -> List[str]:
    problems = []
    for path, key, value in _walk(config, ""):
        if key.lower() == "headers" and isinstance(value, Mapping):
            for header, header_value in value.items():
                problem = _secret_problem(f"{path}.{header}", header_value)
                if problem:
                    problems.append(problem)
        elif _SECRET_KEY.match(key) and not isinstance(value, (Mapping, list)) and ".headers." not in f".{path}.":
            problem = _secret_problem(path, value)
            if problem:
                problems.append(problem)
    return problems
