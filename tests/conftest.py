import os
import sys
from pathlib import Path

import pytest

import conf  # noqa: F401  (the task config group, for tests that compose the configs)
from tests.llm_servers import anthropic_server, openai_server  # noqa: F401  (fake LLM API servers)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def generate_cfg(out, **overrides) -> dict:
    """The generate config as Hydra would resolve it, small, for calling the pipeline."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("generate", overrides=[f"out={out}", "progress=false", "workers=1"])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


@pytest.fixture
def gen_cfg():
    return generate_cfg


def run_cli(*args, cwd=None):
    """python -m generate in a scratch directory, so Hydra's outputs/ lands there, with this
    checkout's code (PYTHONPATH): from a scratch folder the editable install would import the
    checkout it was installed from, another worktree's."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run([sys.executable, "-m", "generate", *args], cwd=cwd or scratch,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine two threads make
    every step 20 times slower (63 ms against 3.5 ms measured): use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def host_reads(monkeypatch):
    """Counts, per method, the calls that copy a tensor's values to the host (each a
    synchronisation on a GPU): ``tolist``, ``item``, ``bool()``, ``int()``, ``float()``."""
    import torch

    counts = dict.fromkeys(("tolist", "item", "__bool__", "__int__", "__float__"), 0)
    for name in counts:
        original = getattr(torch.Tensor, name)

        def read(self, *a, _name=name, _original=original, **kw):
            counts[_name] += 1
            return _original(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, read)
    return counts
