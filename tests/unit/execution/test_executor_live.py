"""execution.executor_live, in process and without telemetry: options, bad input, the run loop, stopping."""
from __future__ import annotations

import json
import os
import signal

import pytest

from execution.config import ConfigError
from execution.executor_live import (DEFAULT_CYCLES, RunHooks, RunOptions, UsageError, format_summary, main,
                                     parse_options, run)


def _opts(tmp_path, **kw) -> RunOptions:
    return RunOptions(**{"state_dir": str(tmp_path / "state"), "cycles": 30, "instrument": False, **kw})


def test_parse_options_when_no_flags_then_documented_defaults():
    opts = parse_options([])

    assert (opts.config_path, opts.state_dir, opts.cycles, opts.seed) == (None, "state", None, 7)
    assert (opts.scenario, opts.fault_at, opts.pace, opts.data, opts.instrument) == ("healthy", 100, "replay", None, True)


def test_parse_options_when_all_flags_then_parsed():
    opts = parse_options(["--config", "c.json", "--state-dir", "s", "--cycles", "5", "--seed", "3",
                          "--scenario", "exit_stall", "--fault-at", "2", "--pace", "realtime",
                          "--bar-interval", "0.5", "--data", "d.csv", "--no-instrument"])

    assert opts == RunOptions(config_path="c.json", state_dir="s", cycles=5, seed=3, scenario="exit_stall",
                              fault_at=2, pace="realtime", bar_interval=0.5, data="d.csv", instrument=False)


@pytest.mark.parametrize("argv, fragment", [
    (["--cycles", "0"], "--cycles: expected an integer >= 1"),
    (["--cycles", "ten"], "invalid int value"),
    (["--fault-at", "-3"], "--fault-at: expected an integer >= 0"),
    (["--bar-interval", "0"], "--bar-interval: expected a finite number of seconds > 0"),
    (["--bar-interval", "inf"], "--bar-interval: expected a finite number of seconds > 0"),
    (["--scenario", "meltdown"], "invalid choice: 'meltdown'"),
    (["--pace", "warp"], "invalid choice: 'warp'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_parse_options_when_bad_flag_then_usage_error_one_line(argv, fragment):
    with pytest.raises(UsageError) as err:
        parse_options(argv)

    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_main_when_bad_config_then_exit_2_and_one_line_on_stderr(tmp_path, capsys):
    # Arrange
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"router": {"twap_slices": 0}}', encoding="utf-8")

    # Act
    code = main(["--no-instrument", "--config", str(cfg), "--state-dir", str(tmp_path / "s")])

    # Assert
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "router.twap_slices: expected an integer >= 1, got 0" in err


def test_main_when_help_then_exit_0_with_usage(capsys):
    code = main(["--help"])

    assert code == 0
    assert "--scenario" in capsys.readouterr().out


def test_main_when_state_dir_unwritable_then_exit_2_one_line(tmp_path, capsys):
    # Arrange: journal.jsonl is taken by a folder
    (tmp_path / "s" / "journal.jsonl").mkdir(parents=True)

    # Act
    code = main(["--no-instrument", "--cycles", "3", "--state-dir", str(tmp_path / "s")])

    # Assert
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "journal.jsonl: is a directory, not a regular file" in err


def test_main_when_good_run_then_exit_0_and_summary(tmp_path, capsys):
    code = main(["--no-instrument", "--cycles", "40", "--state-dir", str(tmp_path / "s")])

    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.startswith("bars: 40   signals: ")
    assert "journal.jsonl" in out and "PnL realized:" in out


def test_run_when_replay_then_state_files_written_and_hook_sees_every_cycle(tmp_path):
    # Arrange
    seen = []
    opts = _opts(tmp_path)

    # Act
    summary = run(opts, RunHooks(on_cycle=seen.append))

    # Assert
    assert [r.index for r in seen] == list(range(30))
    assert summary.cycles == 30 and summary.stats.bars == 30 and not summary.interrupted
    with open(os.path.join(opts.state_dir, "positions.json"), encoding="utf-8") as fh:
        positions = json.load(fh)
    assert set(positions) == {"written_at", "positions", "tp_sl", "realized_pnl"}
    assert os.path.exists(os.path.join(opts.state_dir, "journal.jsonl"))
    assert not os.path.exists(os.path.join(opts.state_dir, "diagnostics.json"))  # no telemetry, no publisher


def test_run_when_no_cycles_given_then_default_count(tmp_path):
    summary = run(_opts(tmp_path, cycles=None))

    assert summary.cycles == DEFAULT_CYCLES


def test_run_when_bad_config_then_config_error_and_no_state_dir(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"exchange": {"fee_rate": 2}}', encoding="utf-8")

    with pytest.raises(ConfigError):
        run(_opts(tmp_path, config_path=str(cfg)))

    assert not (tmp_path / "state").exists()


def test_run_when_sigterm_mid_run_then_cycle_finished_state_written_and_handlers_restored(tmp_path):
    # Arrange: the hook sends SIGTERM to this process during cycle 4
    before = signal.getsignal(signal.SIGTERM)

    def on_cycle(result):
        if result.index == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    opts = _opts(tmp_path, cycles=100)

    # Act
    summary = run(opts, RunHooks(on_cycle=on_cycle))

    # Assert
    assert summary.interrupted and summary.cycles == 5
    assert os.path.exists(os.path.join(opts.state_dir, "positions.json"))
    assert signal.getsignal(signal.SIGTERM) is before
    assert format_summary(summary)[0] == "interrupted: finished the current cycle and wrote state"


def test_run_when_realtime_and_sigint_then_stops_without_waiting_out_the_bar(tmp_path):
    # Arrange: bars an hour apart in wall time; SIGINT during the first cycle must cut the wait
    def on_cycle(result):
        os.kill(os.getpid(), signal.SIGINT)

    # Act
    summary = run(_opts(tmp_path, pace="realtime", bar_interval=3600.0, cycles=3), RunHooks(on_cycle=on_cycle))

    # Assert
    assert summary.interrupted and summary.cycles == 1


def test_format_summary_when_run_done_then_vetoes_by_reason_and_state_paths(tmp_path):
    summary = run(_opts(tmp_path, cycles=120))

    lines = format_summary(summary)

    assert lines[0].startswith("bars: 120")
    for reason in summary.stats.vetoes:
        assert f"{reason}={summary.stats.vetoes[reason]}" in lines[0]
    assert lines[-1].startswith("state: ")
