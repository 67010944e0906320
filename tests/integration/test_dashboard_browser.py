"""The risk panel in a real browser: Streamlit on 127.0.0.1, Debian's Chromium driven by Playwright.

Takes a screenshot of the panel into the test's temp folder; ``make screenshot`` runs this test
with ``OTEL_DIAG_SCREENSHOT=docs/images/risk_panel.png`` to refresh the README's image (so
``make test`` leaves the working tree as it was).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from dashboard import risk_panel as rp
from execution.config import load_config
from execution.diagnostics_document import stale_symbol_text
from execution.scenarios import Scenario
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.cli import ROOT, cli_env
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.env import free_port
from tests.fixtures.polling import wait_until
from tests.fixtures.replay import published_documents

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOT_ENV = "OTEL_DIAG_SCREENSHOT"  # where to write the screenshot (make screenshot: the README's image)
JAEGER = "http://127.0.0.1:16686"


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    assert wait_until(healthy, timeout, 0.2), f"streamlit did not answer on {url} within {timeout:.0f} s"


def _wait_idle(page) -> None:
    """Until the script run has finished: no 'Running...' status widget for a moment."""
    status = page.locator('[data-testid="stStatusWidget"]')
    for _ in range(3):
        status.wait_for(state="hidden", timeout=15_000)
        page.wait_for_timeout(300)
        if not status.is_visible():
            return


@pytest.fixture
def serve_panel(tmp_path):
    """Starts the risk panel over ``tmp_path/state`` holding ``executors`` ({folder name: document}); returns its
    URL and the state folder. Every panel started is stopped at the end of the test."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (installs Debian's chromium)")
    procs = []

    def start(executors):
        state = tmp_path / "state"
        for name, doc in executors.items():
            fx.write_state(state / name, doc)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", os.path.join(ROOT, "dashboard", "app.py"),
             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
             "--", "--state-dir", "state", "--refresh-seconds", "2"],
            cwd=tmp_path, env=cli_env(JAEGER_UI_URL=JAEGER), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        return url, state

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def panel(serve_panel):
    """A running risk panel over two executors (healthy, and a stalled router with a TP/SL gap), every symbol's
    market data fresh."""
    now = time.time()
    return serve_panel({"executor-a": fx.with_market_data(fx.healthy(now)),
                        "executor-b": fx.with_market_data(fx.alerting(now))})


@pytest.fixture
def symbol_freeze_document(tmp_path):
    """The last document a running executor published in a symbol_freeze replay (fault at bar 20 of 60): the
    engine's own run, its shipped config, no OTel environment. Returns (document, faulted symbol, symbols)."""
    scenario = Scenario("symbol_freeze", fault_at=20)
    ticks = published_documents(tmp_path / "replay", SHIPPED_CONFIG, 60, scenario=scenario.name,
                                fault_at=scenario.fault_at).ticks
    assert ticks, "the replay published no document while running"
    symbols = load_config(SHIPPED_CONFIG).strategy.symbols
    return ticks[-1], scenario.fault_symbol(symbols), tuple(symbols)


def test_risk_panel_in_chromium_when_loaded_then_liveness_card_and_screenshot(panel, tmp_path):
    screenshot = os.environ.get(SCREENSHOT_ENV) or str(tmp_path / "risk_panel.png")
    url, state = panel
    dialogs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("executor-b", exact=False).first.wait_for(timeout=20_000)
            page.locator('[data-testid="stTable"]').nth(3).wait_for(timeout=20_000)
            page.locator('[data-testid="stVegaLiteChart"]').nth(1).wait_for(timeout=20_000)
            _wait_idle(page)

            tables = page.locator('[data-testid="stTable"]')
            healthy_card, stalled_card = tables.nth(0).inner_text(), tables.nth(2).inner_text()
            assert re.search(r"✅\s+Signals\s+idle for 42s\s+10m\s+trace ↗", healthy_card), healthy_card
            assert re.search(r"🔴\s+Router\s+idle for 45m\s+30m", stalled_card), stalled_card
            limits = re.escape(fx.ALL_SYMBOL_LIMITS)
            assert re.search(rf"✅\s+{rp.MARKET_DATA_LABEL}\s+all {len(fx.MARKET_SYMBOLS)} symbols fresh\s+{limits}",
                             healthy_card), healthy_card
            assert re.search(r"🔴\s+Exits \(TP/SL triggers\)\s+never seen \(missing\)\s+1h", stalled_card)
            assert "mismatch: 1 open without TP/SL: ETHUSDT" in tables.nth(3).inner_text()
            link = tables.nth(0).get_by_role("link").first.get_attribute("href")
            assert link == f"{JAEGER}/trace/{fx.TRACE_IDS['signals']}"

            os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
            page.screenshot(path=screenshot, full_page=True)

            # Auto-refresh picks up a new executor; its hostile strings render as text, never as HTML.
            fx.write_state(state / "executor-c", fx.hostile(time.time()))
            page.get_by_text("executor-c", exact=False).first.wait_for(timeout=15_000)
            page.get_by_text("1: <script>alert(1)</script>", exact=True).wait_for(timeout=15_000)
            _wait_idle(page)
            assert page.locator("img[src='x']").count() == 0
            assert page.locator("a[href^='javascript']").count() == 0
            assert dialogs == []
        finally:
            browser.close()
    assert os.path.getsize(screenshot) > 20_000


def test_risk_panel_in_chromium_when_symbol_freeze_replay_then_only_the_faulted_symbol_stale(
        serve_panel, symbol_freeze_document):
    doc, frozen, symbols = symbol_freeze_document
    live = doc["runtime_diagnostics"]["liveness"]
    assert live["stale_symbols"] == [frozen], live["stale_symbols"]  # what the page is given: one stale symbol
    check = live["symbol_checks"][frozen]
    url, _ = serve_panel({"executor-f": doc})  # written just now by a running executor: live, not last known
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("executor-f", exact=False).first.wait_for(timeout=20_000)
            page.locator('[data-testid="stTable"]').nth(1).wait_for(timeout=20_000)
            _wait_idle(page)

            heading = page.locator('[data-testid="stHeading"]').filter(has_text="executor-f").first.inner_text()
            card = page.locator('[data-testid="stTable"]').nth(0).inner_text()
        finally:
            browser.close()
    assert "🔴 alerting" in heading, heading
    stale = stale_symbol_text(frozen, check, live)
    limit = re.escape(fx.symbol_limit_text(check))
    assert re.search(rf"🔴\s+{rp.MARKET_DATA_LABEL}\s+{re.escape(stale)}\s+{limit}", card), card
    assert card.count(rp.MARKET_DATA_LABEL) == 1, card
    assert not [s for s in symbols if s != frozen and s in card], card  # no other symbol is marked stale
