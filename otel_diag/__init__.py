"""otel_diag: OpenTelemetry runtime diagnostics for the execution engine."""
