"""Every stage on the configured device: ``train.model.place`` picks it from the ``hardware``
group, and a run from a checkpoint (evaluation only) and self-improvement put the model there.
No GPU is needed: CUDA's presence is mocked and ``.to`` records where the model was sent."""

import pytest
import torch

from tests.test_improve import dataset, record  # noqa: F401  (the fixture)
from tests.test_train import compose

pytest.importorskip("trl")

from transformers import PreTrainedModel  # noqa: E402

from train.model import place  # noqa: E402


class Recorder(torch.nn.Linear):
    def __init__(self):
        super().__init__(2, 2)
        self.sent = []

    def to(self, device):
        self.sent.append(str(device))
        return self


@pytest.mark.parametrize("use_cpu, cuda, mps, expected", [
    (True, True, False, "cpu"),      # hardware=cpu wins over a GPU that is there
    (False, True, False, "cuda"),    # hardware=gpu on a CUDA machine
    (False, True, True, "cuda"),     # CUDA before MPS
    (False, False, True, "mps"),     # a Mac
    (False, False, False, "cpu"),    # hardware=gpu where there is none: the CPU (TRL would do the same)
])
def test_place_follows_the_hardware_config(monkeypatch, use_cpu, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    model = Recorder()
    assert place(model, {"hardware": {"use_cpu": use_cpu}}) is model
    assert model.sent == [expected]


def test_a_quantized_model_stays_where_bitsandbytes_put_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = Recorder()
    model.hf_quantizer = object()
    place(model, {"hardware": {"use_cpu": False}})
    assert model.sent == []


@pytest.fixture
def on_a_pretend_gpu(monkeypatch):
    """CUDA 'available'; every PreTrainedModel.to records its device and stays on the CPU."""
    sent = []

    def to(self, *args, **kwargs):
        sent.append(str(args[0] if args else kwargs.get("device")))
        return self
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(PreTrainedModel, "to", to)
    return sent


@pytest.fixture
def checkpoint_for(tmp_path, dataset):  # noqa: F811
    """A tiny Llama checkpoint whose char tokenizer covers the dataset's text."""
    from transformers import AutoModelForCausalLM

    from train.model import tiny_config
    from train.tokenizer import build_char_tokenizer

    data, train, test = dataset
    tok = build_char_tokenizer(r["Question"] + r["Reasoning"] for r in train + test)
    m = {"arch": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "max_position_embeddings": 512}
    path = tmp_path / "ckpt"
    AutoModelForCausalLM.from_config(tiny_config(m, tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return data, path


# (overrides, the device the model must be sent to): why
RUNS = [
    (["hardware=gpu"], "cuda"),   # evaluation of a checkpoint on a GPU machine (the bug: it stayed on the CPU)
    (["hardware=cpu"], "cpu"),    # hardware=cpu: the CPU even where CUDA is there
]


@pytest.mark.parametrize("overrides, device", RUNS)
def test_evaluation_from_a_checkpoint_runs_on_the_configured_device(tmp_path, checkpoint_for, on_a_pretend_gpu,
                                                                   monkeypatch, overrides, device):
    import train.evaluate
    from train.__main__ import run

    data, ckpt = checkpoint_for
    c = compose("experiment=smoke", "sft.enabled=false", "grpo.enabled=false", f"init_from={ckpt}",
                f"data.path={data}", *overrides)
    seen = []

    def evaluate(model, tokenizer, records, e, run_dir):
        seen.append(list(on_a_pretend_gpu))
        return {}
    monkeypatch.setattr(train.evaluate, "evaluate", evaluate)
    run(c, tmp_path / "run")
    assert seen == [[device]]     # placed once, before evaluation


def test_self_improvement_samples_on_the_configured_device(tmp_path, checkpoint_for, on_a_pretend_gpu):
    from transformers import AutoModelForCausalLM

    from train import improve
    from train.tokenizer import load_tokenizer

    data, ckpt = checkpoint_for
    c = compose("experiment=smoke", "hardware=gpu", "improve.enabled=true", "improve.iterations=1",
                "improve.n_problems=2", "improve.num_samples=1", "improve.max_new_tokens=4")
    model = AutoModelForCausalLM.from_pretrained(str(ckpt))
    train_records = [record(i, "train") for i in range(3)]
    improve.run(model, load_tokenizer(ckpt), train_records, data, c, tmp_path / "run",
                retrain=lambda *a: (a[0], {}))
    assert on_a_pretend_gpu == ["cuda"]
