"""A paper-trading execution engine for USDT-margined perpetual futures.

The engine knows nothing of telemetry: ``otel_diag`` instruments it from outside.
Run it with ``python -m execution`` (see :mod:`execution.executor_live`).
"""
