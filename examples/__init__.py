"""Runnable examples of engines that otel_diag can instrument from the outside."""
