# Set-up and everyday commands. Uses the active virtual environment if there is
# one, else creates .venv here. Torch is installed only when absent, pinned to
# a CPU build so a bare install does not pull a multi-GB CUDA wheel.
ifdef VIRTUAL_ENV
PY := python
STAMP := $(VIRTUAL_ENV)/.probpl-installed
else
PY := .venv/bin/python
STAMP := .venv/.probpl-installed
endif
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0

.PHONY: install demo test test-slow test-bench lint bench tutorials clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: install
	$(TEST_ENV) $(PY) examples/demo.py

lint: install
	$(PY) -m ruff check probpl tests benchmarks examples

test: lint
	$(TEST_ENV) $(PY) -m pytest -q

test-slow: install
	$(TEST_ENV) $(PY) -m pytest -q -m slow

test-bench: install
	$(TEST_ENV) $(PY) -m pytest -q -m bench

bench: install
	$(TEST_ENV) $(PY) benchmarks/run_all.py

tutorials: install
	$(TEST_ENV) $(PY) tutorial/run_all.py --write

clean:
	rm -rf .venv build dist *.egg-info .pytest_cache .ruff_cache
