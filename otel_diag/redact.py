"""Secrets never printed: URLs shown without credentials, and known secrets masked in every log record.

Usage::

    from otel_diag.redact import hide_in_logs, secrets_in, shown_value, url_without_credentials

    url_without_credentials("http://ops:pw@jaeger:16686/ui?token=t")   # 'http://jaeger:16686/ui'
    shown_value("OTEL_EXPORTER_OTLP_HEADERS", "authorization=…")      # '(value hidden)'
    hide_in_logs(secrets_in(os.environ))   # header values, URL passwords and query tokens now log as ***

``secrets_in`` reads the settings that may carry a secret: the values of ``OTEL_*_HEADERS`` and the
password, query and fragment of ``*_ENDPOINT`` and ``*_URL``. ``hide_in_logs`` wraps the logging record
factory once per process, so a record of *any* logger (the SDK's, urllib3's, the application's) has those
strings masked before a handler sees it — message, traceback and stack alike. Stdlib only.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Callable, Iterable, Mapping, Optional, Pattern, Set
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"
_MIN_VALUE_CHARS = 4  # a shorter "secret" is none, and masking it would garble every log line
_MIN_WORD_CHARS = 8   # a word of a value is masked on its own: the token of "Bearer <token>", not "Bearer"
# The SDK's own header-parse warning quotes the raw entry; configure() reports bad headers once, values hidden.
_HEADER_PARSE_LOGGER = "opentelemetry.util.re"
_HEADER_PARSE_WARNING = "Header format invalid"

_lock = threading.Lock()
_hidden: Set[str] = set()
_pattern: Optional[Pattern[str]] = None
_installed = False


def url_without_credentials(url: Optional[str]) -> Optional[str]:
    """``url`` as ``scheme://host:port/path``: no ``user:password@``, query or fragment; None when it names no host.

    Safe to print, log, or write to a file all can read (diagnostics.json is 0644). A URL written without
    a scheme (``host:port``, as gRPC endpoints often are) comes back the same way.
    """
    if not url:
        return None
    text = url.strip()
    try:
        parts = urlsplit(text)
        bare = not parts.netloc
        if bare:  # "host:4317" or "user:pw@host:4317" parse as a scheme and a path: read them as an authority
            parts = urlsplit("//" + text)
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    if not host:
        return None
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown[2:] if bare else shown


def _carries_headers(name: str) -> bool:
    return name.startswith("OTEL_") and name.endswith("_HEADERS")


def _carries_url(name: str) -> bool:
    return name.endswith(("_ENDPOINT", "_URL"))


def shown_value(name: str, value: str) -> str:
    """The value of setting ``name`` as a message may quote it: headers never, a URL without its credentials."""
    if _carries_headers(name):
        return "(value hidden)"
    if _carries_url(name) and url_without_credentials(value) != value.strip():
        safe = url_without_credentials(value)
        return f"{safe!r} (credentials, query and fragment hidden)" if safe else "(value hidden)"
    return repr(value)


def secrets_in(env: Mapping[str, str]) -> Set[str]:
    """The secret strings the settings in ``env`` carry: header values, URL passwords, queries and fragments."""
    found: Set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if _carries_headers(name):
            for entry in value.split(","):
                found |= _variants(entry.partition("=")[2] or entry)  # an entry without "=" is all value
        elif _carries_url(name):
            found |= _url_secrets(value)
    return {s for s in found if len(s) >= _MIN_VALUE_CHARS}


def _url_secrets(url: str) -> Set[str]:
    try:
        parts = urlsplit(url.strip() if "//" in url else "//" + url.strip())
    except ValueError:  # unparseable: hide what follows the last "@" before the host, and the query
        return _variants(url.rpartition("@")[0]) | _variants(url.partition("?")[2])
    userinfo = parts.netloc.rpartition("@")[0]
    found = _variants(userinfo.partition(":")[2]) | _variants(parts.query) | _variants(parts.fragment)
    for _, value in parse_qsl(parts.query, keep_blank_values=True):
        found |= _variants(value)
    return found


def _variants(value: str) -> Set[str]:
    """``value`` as written and URL-decoded, and each long word of it."""
    value = value.strip()
    if not value:
        return set()
    found = {value, unquote(value)}
    return found | {w for v in found for w in re.split(r"[\s;,&=]+", v) if len(w) >= _MIN_WORD_CHARS}


def hide_in_logs(secrets: Iterable[str]) -> None:
    """From now on every log record of this process shows each of ``secrets`` as ``***`` (idempotent; the set
    only grows, so a record an old exporter thread logs late is masked too)."""
    global _pattern, _installed
    new = {s for s in secrets if len(s) >= _MIN_VALUE_CHARS}
    with _lock:
        if not new - _hidden:  # nothing new (or nothing at all) to hide
            return
        _hidden.update(new)
        if _hidden:  # longest first, so a secret's longer variant is masked whole
            _pattern = re.compile("|".join(re.escape(s) for s in sorted(_hidden, key=len, reverse=True)))
        if not _installed:
            logging.setLogRecordFactory(_masking(logging.getLogRecordFactory()))
            logging.getLogger(_HEADER_PARSE_LOGGER).addFilter(_drop_header_parse_warning)
            _installed = True


def _masking(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        pattern = _pattern
        if pattern is not None:
            try:
                _mask(record, pattern)
            except Exception:  # logging must never fail for this; the record then goes out as made
                pass
        return record

    return factory


def _mask(record: logging.LogRecord, pattern: Pattern[str]) -> None:
    message = record.getMessage()
    if pattern.search(message):
        record.msg, record.args = pattern.sub(MASK, message), None
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        if pattern.search(text):  # handlers print exc_text; one that reads exc_info itself gets nothing
            record.exc_text, record.exc_info = pattern.sub(MASK, text), None
    if record.stack_info and pattern.search(record.stack_info):
        record.stack_info = pattern.sub(MASK, record.stack_info)


def _drop_header_parse_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_HEADER_PARSE_WARNING)
