# Two set-up commands, each installing what it needs into local venvs under .venv/:
#   make demo  - the example run end to end against the bundled Emedgene simulator
#   make test  - lint, type check and the whole suite on Airflow 3.x and on Airflow 2.11
#   make bench - the benchmarks of issue 8, webhooks against polling (Airflow 3), then the cluster
#                benchmark on PostgreSQL (not in test)
#   make dist  - build the sdist and wheel into dist/, check them, install the wheel in a fresh venv
PYTHON ?= python3
VENV ?= .venv
AIRFLOW3 ?= 3.3.2
AIRFLOW2 ?= 2.11.2
AF3 := $(VENV)/airflow3
AF2 := $(VENV)/airflow2
PYTEST_ARGS ?=
DEMO_HOME ?= .demo
BENCH_HOME ?= .bench
CLUSTER_ARGS ?=

.PHONY: demo test test3 test2 lint venvs clean dist bench bench-cluster bench-chaos postgres pg-start pg-stop browser redis

venvs: $(AF3)/.installed $(AF2)/.installed

$(AF3)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AF3)
	$(AF3)/bin/pip install -q --upgrade pip
	$(AF3)/bin/pip install -q "apache-airflow==$(AIRFLOW3)" -e ".[test,lint,hpo,openlineage]"
	touch $@

$(AF2)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AF2)
	$(AF2)/bin/pip install -q --upgrade pip
	$(AF2)/bin/pip install -q "apache-airflow==$(AIRFLOW2)" -e ".[test,hpo,openlineage]"
	touch $@

lint: $(AF3)/.installed
	$(AF3)/bin/ruff check emedgene_provider tests dags_examples bench
	$(AF3)/bin/ruff format --check emedgene_provider tests dags_examples bench
	$(AF3)/bin/mypy

test3: $(AF3)/.installed browser
	$(AF3)/bin/python -m pytest $(PYTEST_ARGS)

# The cases page is tested in a real browser: Debian's Chromium and its driver (about 35 s).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

test2: $(AF2)/.installed
	$(AF2)/bin/python -m pytest $(PYTEST_ARGS)

test: lint test3 test2

demo: $(AF3)/.installed
	DEMO_HOME=$(DEMO_HOME) $(AF3)/bin/python scripts/demo.py

clean:
	rm -rf $(VENV) $(DEMO_HOME) dist

# -- the package (issue 10) -----------------------------------------------------------------------
# The build tools live in their own venv; the wheel is installed, with Airflow 3 and nothing from
# this checkout, into a venv made anew each time, where `airflow providers list` must list it.
DIST_TOOLS := $(VENV)/dist-tools
DIST_CHECK := $(VENV)/dist-check

$(DIST_TOOLS)/.installed:
	$(PYTHON) -m venv $(DIST_TOOLS)
	$(DIST_TOOLS)/bin/pip install -q --upgrade pip
	$(DIST_TOOLS)/bin/pip install -q "build>=1.2" "twine>=5"
	touch $@

dist: $(DIST_TOOLS)/.installed
	rm -rf dist $(DIST_CHECK)
	$(DIST_TOOLS)/bin/python -m build --outdir dist .
	$(DIST_TOOLS)/bin/twine check --strict dist/*
	$(DIST_TOOLS)/bin/python scripts/check_dist.py contents dist
	$(PYTHON) -m venv $(DIST_CHECK)
	$(DIST_CHECK)/bin/pip install -q --upgrade pip
	$(DIST_CHECK)/bin/pip install -q "apache-airflow==$(AIRFLOW3)" dist/*.whl
	$(DIST_TOOLS)/bin/python scripts/check_dist.py installed $(DIST_CHECK)

# -- benchmarks (issue 8) -------------------------------------------------------------------------
# The cluster benchmark's extra dependencies: psycopg2 and asyncpg for Airflow on PostgreSQL.
$(AF3)/.bench-installed: $(AF3)/.installed pyproject.toml
	$(AF3)/bin/pip install -q -e ".[bench]"
	touch $@

# The example batch DAG, 50 mapped cases, through api-server, dag-processor, scheduler
# (LocalExecutor) and two triggerers on a PostgreSQL started for it under $(BENCH_HOME)/pg and
# stopped afterwards, failure or not. CLUSTER_ARGS passes options to bench/cluster.py.
CLUSTER_BENCH = BENCH_HOME=$(BENCH_HOME) bench/pg.sh run \
	$(AF3)/bin/python bench/cluster.py --home $(BENCH_HOME)/cluster $(CLUSTER_ARGS)

# Every benchmark (bench/run_all.py), then the cluster benchmark; both run, and either failing
# fails the target. (No $(MAKE) in the recipe: `make -n bench` must not run anything.)
bench: $(AF3)/.bench-installed postgres redis browser
	@status=0; \
	$(AF3)/bin/python bench/run_all.py || status=1; \
	$(AF3)/bin/python bench/webhook_economy.py || status=1; \
	$(AF3)/bin/python bench/cases_view.py || status=1; \
	$(CLUSTER_BENCH) || status=1; \
	$(CLUSTER_BENCH) --chaos --home $(BENCH_HOME)/chaos || status=1; \
	exit $$status

bench-cluster: $(AF3)/.bench-installed postgres redis
	$(CLUSTER_BENCH)

# The cluster benchmark under process-level chaos (bench/cluster_chaos.py): a Celery worker killed
# mid-create, a triggerer killed with 200 waits, PostgreSQL restarted, the tenant down for 2
# minutes, every token expired; ends with "chaos: cases per family X, families lost N, green runs A/B".
bench-chaos: $(AF3)/.bench-installed postgres redis
	$(CLUSTER_BENCH) --chaos --home $(BENCH_HOME)/chaos

# The cluster's Celery broker: Debian's redis-server unless it is already installed (the bench
# starts its own on a free port and stops it).
redis:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q redis-server; }

# PostgreSQL's tools: Debian's postgresql package unless initdb is already installed.
postgres:
	@command -v initdb >/dev/null 2>&1 || BENCH_HOME=$(BENCH_HOME) bench/pg.sh install

pg-start: postgres
	BENCH_HOME=$(BENCH_HOME) bench/pg.sh start

pg-stop:
	BENCH_HOME=$(BENCH_HOME) bench/pg.sh stop
