"""Each private OpenTelemetry internal of otel_diag/_internals.py still means what otel_diag relies on.

These fail loudly after an upgrade that moves or changes one; the product keeps a fallback meanwhile.
"""
from __future__ import annotations

import importlib

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from otel_diag import _internals


def test_cardinality_limit_when_sdk_imported_then_named_by_the_sdk_and_applied_by_it():
    sdk = importlib.import_module("opentelemetry.sdk.metrics._internal._view_instrument_match")
    limit = _internals.SDK_CARDINALITY_LIMIT
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("probe")
    meter.create_observable_counter("probe", [lambda options: [Observation(1, {"k": i}) for i in range(limit + 10)]])

    points = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points

    assert sdk._DEFAULT_CARDINALITY_LIMIT == limit
    assert len(points) == limit + 1 and sum(p.attributes.get("otel.metric.overflow") is True for p in points) == 1


def test_meter_provider_resource_when_sdk_provider_then_the_resource_it_exports_with():
    resource = Resource.create({"service.name": "host", "service.instance.id": "h-1"})
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    provider.get_meter("probe").create_observable_gauge("probe", [lambda options: [Observation(1)]])

    exported = reader.get_metrics_data().resource_metrics[0].resource

    assert _internals.meter_provider_resource(provider) is resource
    assert exported.attributes == resource.attributes


def test_prometheus_names_when_real_exporter_then_spelled_alike():
    registry = CollectorRegistry()
    meter = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)]).get_meter("probe")
    meter.create_observable_counter("a.b_total", [lambda options: [Observation(1, {"x.y": "1"})]], unit="{thing}")
    meter.create_observable_gauge("c.d", [lambda options: [Observation(1)]], unit="s")

    text = generate_latest(registry).decode()

    assert f'{_internals.prometheus_metric_name("a.b_total", "{thing}", counter=True)}{{' in text
    assert f'{_internals.prometheus_label("x.y")}="1"' in text
    assert f'\n{_internals.prometheus_metric_name("c.d", "s", counter=False)}{{otel_scope_name="probe"' in text


def test_suppress_keys_when_suppressed_either_way_then_read_as_the_public_function_reads_them():
    from opentelemetry import context
    from opentelemetry.instrumentation import utils
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation

    def suppressed_as_the_wrappers_read_it() -> bool:
        ctx = _internals.current_context()
        assert ctx is context.get_current()  # the current context, read where the API reads it
        return any(ctx.get(key) for key in _internals.SUPPRESS_KEYS)

    # the keys are the ones the public API sets and reads
    assert _internals.SUPPRESS_KEYS == (context._SUPPRESS_INSTRUMENTATION_KEY, utils._SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
    seen = [(suppressed_as_the_wrappers_read_it(), not is_instrumentation_enabled())]
    with suppress_instrumentation():
        seen.append((suppressed_as_the_wrappers_read_it(), not is_instrumentation_enabled()))
    for key in _internals.SUPPRESS_KEYS:  # each key alone, as other instrumentations set them
        token = context.attach(context.set_value(key, True))
        try:
            seen.append((suppressed_as_the_wrappers_read_it(), not is_instrumentation_enabled()))
        finally:
            context.detach(token)
    seen.append((suppressed_as_the_wrappers_read_it(), not is_instrumentation_enabled()))

    assert seen == [(False, False), (True, True), (True, True), (True, True), (False, False)]
