# Two set-up commands, each installing what it needs into local venvs under .venv/:
#   make demo  - the example run end to end against the bundled Emedgene simulator
#   make test  - lint, type check and the whole suite on Airflow 3.x and on Airflow 2.11
PYTHON ?= python3
VENV ?= .venv
AIRFLOW3 ?= 3.3.2
AIRFLOW2 ?= 2.11.2
AF3 := $(VENV)/airflow3
AF2 := $(VENV)/airflow2
PYTEST_ARGS ?=
DEMO_HOME ?= .demo

.PHONY: demo test test3 test2 lint venvs clean

venvs: $(AF3)/.installed $(AF2)/.installed

$(AF3)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AF3)
	$(AF3)/bin/pip install -q --upgrade pip
	$(AF3)/bin/pip install -q "apache-airflow==$(AIRFLOW3)" -e ".[test,lint]"
	touch $@

$(AF2)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AF2)
	$(AF2)/bin/pip install -q --upgrade pip
	$(AF2)/bin/pip install -q "apache-airflow==$(AIRFLOW2)" -e ".[test]"
	touch $@

lint: $(AF3)/.installed
	$(AF3)/bin/ruff check emedgene_provider tests dags_examples bench
	$(AF3)/bin/ruff format --check emedgene_provider tests dags_examples bench
	$(AF3)/bin/mypy

test3: $(AF3)/.installed
	$(AF3)/bin/python -m pytest $(PYTEST_ARGS)

test2: $(AF2)/.installed
	$(AF2)/bin/python -m pytest $(PYTEST_ARGS)

test: lint test3 test2

demo: $(AF3)/.installed
	DEMO_HOME=$(DEMO_HOME) $(AF3)/bin/python scripts/demo.py

clean:
	rm -rf $(VENV) $(DEMO_HOME)
