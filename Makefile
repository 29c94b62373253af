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

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.generate_bench
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.train_bench

clean:
	rm -rf $(VENV) outputs multirun data/generated
