# The two commands a newcomer needs:
#   make demo   set up, then run the whole thing on embedded defaults (SQLite, in-process queue, simulators)
#   make test   set up, then run every test (on SQLite, and on MariaDB + Redis when they answer)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flask --app wsgi demo

# two test processes (pytest-xdist, a file each at a time): the machines we run on have two cores, and a test
# waits on MariaDB, a browser or a simulator much of its time; TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy dsl rules experiments

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) instance/recoup.db instance/recoup-inboxes .pytest_cache
