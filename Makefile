# Two entry points on a fresh machine: `make demo` (install + the main job on embedded data)
# and `make test` (install + lint + the fast tests; `make test-e2e`: the end-to-end lane). All install from
# constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: setup demo test test-e2e lint bench clean cluster-e2e results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	@# a second `make demo` resumes (and re-reports) the existing study instead of overwriting it
	if [ -f studies_out/quickstart/study.yaml ]; then \
	  $(BIN)/anpyc-sweep launch studies/quickstart.yaml --resume; \
	else $(BIN)/anpyc-sweep launch studies/quickstart.yaml; fi
	$(BIN)/anpyc-sweep report studies/quickstart.yaml

lint: setup
	$(BIN)/ruff check .

# the fast lane: lint, unit/property/small integration tests and one real local Ray study (<= 5 min on 2 cores)
test: setup lint
	$(BIN)/pytest -q --durations=15 -m "not e2e and not slow" tests

# the end-to-end lane: loopback `ray up` cluster, killed workers and drivers, SIGINT, S3, tracking outage, UI,
# and the few tests that train a real CNN
test-e2e: setup
	$(BIN)/pytest -q --durations=15 -m "e2e or slow" tests

cluster-e2e: setup  # ray up -> job submit -> queries from outside -> ray down, on loopback (root, sshd)
	$(BIN)/pytest -q -s tests/cluster

# every stored study's report, figures and docs/RESULTS.md section again, then the claims table (no training;
# STORAGE=/path/to/stores when they are not in studies_out)
results: setup
	STORAGE=$${STORAGE:-studies_out} studies/run_all.sh --report-only

clean:
	rm -rf $(VENV) runs .pytest_cache
