# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sharpen-installed
# the JVM class archive is made for these JVM options (curation/spark_session.py)
CDS    := $(VENV)/.sharpen-jvm-archive
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned: the local CPU wheel; a looser spec would pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	@# KenLM's build prerequisites (apt) and lmplz/build_binary, built once from the kenlm
	@# sdist and cached; before the project, whose `kenlm` query module compiles at install
	$(PY) curation/quality/kenlm_build.py
	@# bubblewrap for the code-reward sandbox (training/rewards/sandbox.py), as root with apt;
	@# optional: without it the sandbox uses util-linux `unshare`
	@command -v bwrap >/dev/null || { test "$$(id -u)" = 0 && export DEBIAN_FRONTEND=noninteractive \
	  && { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } \
	  >/dev/null 2>&1; } || echo "note: bubblewrap not installed; the code sandbox will use unshare"
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# the Spark driver's classes archived once (AppCDS): each job's JVM starts ~5 s sooner
$(CDS): $(STAMP) curation/spark_session.py curation/jvm_class_archive.py
	$(PY) -m curation.jvm_class_archive || echo "note: no JVM class archive; jobs start without one"
	@touch $(CDS)

demo: $(CDS)
	$(VENV)/bin/sharpen demo

test: $(CDS)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
