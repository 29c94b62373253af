# make install  -> .venv with the project, its training and dev extras (torch first, CPU wheel)
# make demo     -> the main job (generate, SFT, GRPO, eval); its last output line is the run directory
# make test     -> the test suite (installs first when needed)
# make bench    -> throughput benchmarks
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: the pinned version resolves to the local CPU wheel; a bare "torch"
	# requirement would pull the newest CUDA build.
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m train

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

# The browser test of python -m generate.record drives Debian's chromium with Playwright; it
# is skipped, never failed, where chromium is missing and cannot be installed here.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  { export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } || \
	    { sudo -n apt-get update >/dev/null 2>&1 && sudo -n apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; } || \
	  echo "chromium not installed: the browser test will be skipped"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.generate_bench
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.train_bench

clean:
	rm -rf $(VENV) outputs multirun data/generated
