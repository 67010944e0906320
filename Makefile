# otel-diag — every target sets up what it needs by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
CYCLES ?= 480
STATE_DIR ?= state
PYTEST_ARGS ?=

.PHONY: run test bench screenshot dashboard rules schema status setup system-deps clean

run: $(STAMPS)/venv ## set up, then a healthy paper replay with telemetry
	$(BIN)/executor --cycles $(CYCLES) --state-dir $(STATE_DIR)
	@echo
	@$(BIN)/otel-diag status --state-dir $(STATE_DIR) || true

test: $(STAMPS)/venv $(STAMPS)/system-deps ## set up, then the layering contracts and the fast suite (unit + integration + reliability + benchmark smoke)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests/unit tests/integration tests/reliability tests/benchmarks -q $(PYTEST_ARGS)

bench: $(STAMPS)/venv ## measure overhead budgets; writes docs/benchmarks.md, fails when a budget is missed
	$(BIN)/python -m tests.benchmarks.run --output docs/benchmarks.md

screenshot: $(STAMPS)/venv $(STAMPS)/system-deps ## refresh docs/images/risk_panel.png (the README's image) from the browser test
	OTEL_DIAG_SCREENSHOT=$(CURDIR)/docs/images/risk_panel.png $(BIN)/python -m pytest tests/integration/test_dashboard_browser.py -q

dashboard: $(STAMPS)/venv ## the Streamlit risk panel on http://127.0.0.1:8501
	$(BIN)/streamlit run dashboard/app.py --server.address 127.0.0.1 --server.headless true -- --state-dir $(STATE_DIR)

rules: $(STAMPS)/venv ## regenerate the Prometheus alert rules from the config
	$(BIN)/otel-diag rules --config config/strategy_config.json -o collector/prometheus/liveness_rules.yml

schema: $(STAMPS)/venv ## regenerate docs/runtime_diagnostics.schema.json from the document model
	$(BIN)/python -m execution.diagnostics_document > docs/runtime_diagnostics.schema.json.tmp
	mv docs/runtime_diagnostics.schema.json.tmp docs/runtime_diagnostics.schema.json

status: $(STAMPS)/venv
	$(BIN)/otel-diag status --state-dir $(STATE_DIR)

setup: $(STAMPS)/venv $(STAMPS)/system-deps

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dashboard,auto,dev,examples]'
	@touch $@

# Services the tests start for real: Debian's prometheus (with promtool), prometheus-alertmanager (with amtool)
# and chromium (emoji font for the panel).
$(STAMPS)/system-deps: Makefile
	@mkdir -p $(STAMPS)
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null && command -v chromium >/dev/null && dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then \
	  echo "system packages present"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager chromium fonts-dejavu-core fonts-noto-color-emoji >/dev/null; \
	fi
	@touch $@

clean:
	rm -rf $(VENV) $(STAMPS) $(STATE_DIR)
