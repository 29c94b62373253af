# make install  -> .venv with the project, its training and dev extras (torch first, CPU wheel)
# make demo     -> the main job (generate, SFT, GRPO, eval); its last output line is the run directory
# make test     -> the test suite (installs first when needed)
# make bench    -> throughput benchmarks
# make wheelhouse -> wheels of every dependency but torch, for an offline GPU machine (docs/ablations.md)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install demo test bench clean wheelhouse gpu-wheels

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
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.decode_bench
	HF_HUB_OFFLINE=1 $(PY) -W ignore -m benchmarks.grpo_bench

# Wheels for a GPU machine without internet that has its own torch: the project's requirements
# (train extra) at the versions installed here, minus torch, for WHEEL_PYTHON on WHEEL_PLATFORMS,
# plus the project's own wheel. Wheels where PyPI has them; a pure-Python package published only as
# an sdist (antlr4-python3-runtime 4.9.3, hydra-core's parser) comes as its sdist and is built at
# install time with setuptools from the wheelhouse. Install there (docs/ablations.md, "Offline install on a GPU machine"):
#   python -m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
#   python -m pip install --no-index --find-links wheelhouse --no-deps backspace
WHEELHOUSE      ?= wheelhouse
WHEEL_PYTHON    ?= 3.11
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64

wheelhouse: $(STAMP)
	mkdir -p $(WHEELHOUSE)
	$(PY) -m benchmarks.wheelhouse --extras train > $(WHEELHOUSE)/requirements.txt
	$(PY) -m pip download --no-deps --prefer-binary --implementation cp --python-version $(WHEEL_PYTHON) \
	  $(addprefix --platform ,$(WHEEL_PLATFORMS)) --dest $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	$(PY) -m pip wheel --no-deps --no-build-isolation --wheel-dir $(WHEELHOUSE) .

clean:
	rm -rf $(VENV) outputs multirun data/generated

# The few wheels the lent GPU machine's image lacks or holds at other versions (it has torch
# 2.11, transformers 5.17, peft, accelerate, pyarrow, ...; /work/.library/device/KINDS.md), for
# its Python 3.12, into .whl/ (git-ignored; under the 64 MiB a device call may carry). Then one
# device call, carrying .whl: bash benchmarks/gpu_session.sh (docs/study-gpu.md).
GPU_WHEELS ?= trl transformers datasets dill multiprocess hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher

GPU_PYTHON    ?= 3.12
GPU_WHEEL_DIR ?= .whl

gpu-wheels: $(STAMP)
	mkdir -p $(GPU_WHEEL_DIR)
	$(PY) -m benchmarks.wheelhouse --only "$(GPU_WHEELS)" > $(GPU_WHEEL_DIR)/requirements.txt
	$(PY) -m pip download --no-deps --prefer-binary --implementation cp --python-version $(GPU_PYTHON) \
	  $(addprefix --platform ,$(WHEEL_PLATFORMS)) --dest $(GPU_WHEEL_DIR) -r $(GPU_WHEEL_DIR)/requirements.txt
	# an sdist among them (antlr4-python3-runtime 4.9.3 has no wheel) is pure Python: built into a wheel here
	for f in $(GPU_WHEEL_DIR)/*.tar.gz; do test -e "$$f" || continue; $(PY) -m pip wheel --no-deps --wheel-dir $(GPU_WHEEL_DIR) "$$f" && rm "$$f"; done
