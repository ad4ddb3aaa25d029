# Parley: the two front doors are `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./.parley

.PHONY: dev up test bench bench-policy loadtest install install-test install-loadtest browser servers clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(VENV)/bin/activate
	$(PIP) install -q -e .

install-test: $(VENV)/bin/activate
	$(PIP) install -q -e '.[test]'

# $(call apt_install,COMMAND,PACKAGE): install a Debian package unless COMMAND is already there.
apt_install = command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -q $(2) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $(2) >/dev/null; }; }

# Debian's chromium for the end-to-end browser test (Playwright drives it via executable_path).
browser:
	@$(call apt_install,chromium,chromium)

# Debian's coturn for the TURN tests (started on loopback by tests/turn_server.py, never as a service),
# and Debian's prometheus: promtool checks and unit-tests the rules, and the integration test
# scrapes `parley up` with a real Prometheus (never started as a service).
servers:
	@$(call apt_install,turnserver,coturn)
	@$(call apt_install,promtool,prometheus)

dev: install
	$(VENV)/bin/parley dev --host $(HOST) --port $(PORT) --data-dir $(DATA)

up: $(VENV)/bin/activate
	$(PIP) install -q -e '.[up]'
	$(VENV)/bin/parley up --host $(HOST) --port $(PORT) --data-dir $(DATA)-up

test: install-test browser servers
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: install-test
	$(PY) -m loadtests.bench $(BENCH_ARGS)

# Locust (docs/loadtesting.md): starts `parley up` (SYSTEM=dev: `parley dev`) unless TARGET is a
# running server's URL (then ACCOUNTS=tokens file), runs a headless distributed Locust, and leaves
# report.html and summary.json in loadtests/results/<date>-<scenario>/.
#   make loadtest USERS=2000 SPAWN=200 DURATION=60 [SCENARIO=chat|hold|channel|biggroup|storm|rolling]
#                 [TARGET=https://chat.example.org ACCOUNTS=tokens.json] [WORKERS=n] [GATEWAYS=n] [LOADTEST_ARGS=...]
USERS    ?= 100
SPAWN    ?= 50
DURATION ?= 30
SCENARIO ?= chat
SYSTEM   ?= up
install-loadtest: $(VENV)/bin/activate
	$(PIP) install -q -e '.[loadtest,up]'

loadtest: install-loadtest
	$(PY) -m loadtests.locust.run --scenario $(SCENARIO) --users $(USERS) --spawn-rate $(SPAWN) \
	  --duration $(DURATION) --system $(SYSTEM) $(if $(TARGET),--target $(TARGET)) \
	  $(if $(ACCOUNTS),--accounts $(ACCOUNTS)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(GATEWAYS),--gateways $(GATEWAYS)) $(LOADTEST_ARGS)

# In-process: the policy decision's cost and the send decision loop, full policy vs allow-all.
bench-policy: install
	$(PY) -m loadtests.policy_bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .parley .pytest_cache build *.egg-info
