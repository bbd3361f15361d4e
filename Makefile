# Northwind support assistant. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
RASA    := $(VENV)/bin/rasa
MODEL   := models/support.tar.gz
# What the model is trained from. triage.yml, messages.yml and the FAQ are read at run time
# by the action server, so editing them needs no retraining.
MODEL_INPUTS := config.yml domain.yml data/rules.yml $(shell find data/nlu bot/nlu -type f \( -name '*.yml' -o -name '*.py' \) 2>/dev/null | sort)
export PYTHONPATH := $(CURDIR)
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export RASA_TELEMETRY_ENABLED := false

.PHONY: help setup run shell train data test test-fast triage seed lock clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

EMBEDDINGS := var/embeddings/all-MiniLM-L6-v2/model.safetensors

setup: $(VENV)/.installed var/.seeded $(EMBEDDINGS) ## Create .venv (Python 3.10), install pinned deps, fetch the embedding model, seed demo data

$(VENV)/.installed: requirements.lock requirements-nodeps.lock
	@PYBIN=$$(scripts/find_python.sh) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "creating $(VENV) with $$PYBIN"; rm -rf $(VENV); "$$PYBIN" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==24.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.lock
	@touch $@

var/.seeded: $(VENV)/.installed bot/orders.py scripts/seed_orders.py
	@mkdir -p var
	scripts/with_env.sh $(PY) scripts/seed_orders.py
	@touch $@

$(EMBEDDINGS): $(VENV)/.installed scripts/fetch_embedding_model.py
	$(PY) scripts/fetch_embedding_model.py
	@touch $@

seed: $(VENV)/.installed ## Create the databases and (re)seed the demo orders (reads .env)
	scripts/with_env.sh $(PY) scripts/seed_orders.py

data: $(VENV)/.installed ## Regenerate data/nlu/bitext from ../shared/datasets (and the hold-out set)
	$(PY) scripts/convert_bitext.py

train: $(MODEL) ## Train the model into models/ (only when data/, domain.yml or config.yml changed)

$(MODEL): $(VENV)/.installed $(MODEL_INPUTS)
	@mkdir -p models
	scripts/with_env.sh $(RASA) train --fixed-model-name support --out models
	@touch $@

run: setup train ## Start the demo shop app, the Rasa server (with the widget channel) and the action server
	@scripts/run.sh

shell: setup train ## Chat in the terminal (starts both servers on loopback; CHAT_ARGS="--customer cust-anna")
	@scripts/run.sh shell $(CHAT_ARGS)

triage: setup train ## Triage messages from stdin, one JSON object per line (make triage < msgs.txt)
	@scripts/with_env.sh $(PY) -m bot.triage --model $(MODEL)

test: setup train ## Run every test (unit, stores on SQLite+PostgreSQL, dialogue, NLU, widget channel, browser)
	@scripts/ensure_chromium.sh
	$(PY) -m pytest

test-fast: setup ## Run the tests that need no trained model
	$(PY) -m pytest -m "not model"

lock: ## Re-pin requirements.lock from the current .venv
	$(PY) -m pip freeze --exclude-editable | grep -v -x -F -f <(grep -v '^#' requirements-nodeps.lock) > requirements.lock

clean: ## Remove models, results and local databases (keeps .venv)
	rm -rf models results var test-output .pytest_cache
