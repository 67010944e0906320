"""What otel_diag instruments, declared as contrib instrumentations declare it (``instrumentation_dependencies()``).

The instrumented engine, ``execution``, ships in this distribution, so there is no library version to
check (like contrib's instrumentation of a standard-library module).
"""

_instruments: tuple = ()

_supports_metrics = True

# The name of this instrumentation's ``opentelemetry_instrumentor`` entry point (pyproject.toml): what
# ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` lists to turn it off.
ENTRY_POINT_NAME = "execution"
