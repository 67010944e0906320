"""What otel_diag instruments: the ``execution`` engine of this distribution (no version bound)."""

_instruments: tuple = ()
