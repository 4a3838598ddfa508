# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sharpen-installed
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned: the local CPU wheel; a looser spec would pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	@# KenLM's build prerequisites (apt) and lmplz/build_binary, built once from the kenlm
	@# sdist and cached; before the project, whose `kenlm` query module compiles at install
	$(PY) curation/quality/kenlm_build.py
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sharpen demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
