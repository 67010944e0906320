"""A bracket-order strategy on seeded synthetic bars, run with backtrader.

The example knows nothing of telemetry: ``market`` serves the bars, ``strategy`` trades them
(``entry_signal`` and ``risk_check`` are plain methods, one call per data and bar), and ``run``
builds and runs the engine, with a bar clock and the position views an instrumentation reads
from backtrader's own broker.

Usage::

    from examples.backtrader.run import run
    records, strategy = run(seed=7)                      # healthy
    records, strategy = run(seed=7, fault="naked_entry")  # entries without stop from bar 100
"""
