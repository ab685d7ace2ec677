# The one command surface for people, the README and CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser rabbitmq demo test test-rabbitmq lint bench bench-quick chaos format clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentchord needs Python 3.11+; set PY=python3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's Chromium through Playwright (nothing is downloaded at test time).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

demo: install
	$(BIN)/agentchord demo --latency-ms 200

# The workflow, approval, failure, budget, admission and role-registry tests again with RabbitMQ as
# the broker (Redis keeps the registry and the results): a private virtual host on the machine's
# RabbitMQ (tests/rabbitmq.py).
RABBITMQ_TESTS = tests/test_workflows.py tests/test_approvals.py tests/test_faults.py tests/test_chaos_small.py \
	tests/test_budgets.py tests/test_admission.py tests/test_roles_registry.py

test: install browser rabbitmq
	$(BIN)/pytest
	AGENTCHORD_TEST_BROKER=rabbitmq $(BIN)/pytest $(RABBITMQ_TESTS)

test-rabbitmq: install rabbitmq
	AGENTCHORD_TEST_BROKER=rabbitmq $(BIN)/pytest $(RABBITMQ_TESTS)

# Debian's rabbitmq-server, installed when missing and started when not running.
rabbitmq:
	@command -v rabbitmqctl >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmqctl ] || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends rabbitmq-server; }
	@PATH="$$PATH:/usr/sbin" rabbitmqctl -q status >/dev/null 2>&1 || \
		{ $(SUDO) env PATH="$$PATH:/usr/sbin" rabbitmq-server -detached && \
		  PATH="$$PATH:/usr/sbin" rabbitmqctl -q await_startup --timeout 120; }

lint: install
	$(BIN)/ruff check proj agents coordinator tests bench
	$(BIN)/ruff format --check proj agents coordinator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix proj agents coordinator tests bench
	$(BIN)/ruff format proj agents coordinator tests bench

bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	for b in overhead tokens tax throughput scale; do $(BIN)/python bench/$$b.py || exit 1; done
	$(BIN)/python bench/plots.py

bench-quick: install
	for b in tokens tax throughput scale; do $(BIN)/python bench/$$b.py --quick || exit 1; done
	$(BIN)/python bench/overhead.py --runs 30 --warmup 5

chaos: install
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/chaos.py --unsafe --run-timeout 30 --drain-timeout 60

clean:
	rm -rf $(VENV) .agentchord .pytest_cache .mypy_cache .ruff_cache
