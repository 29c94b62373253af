"""Models, built from config: a tiny Llama or Qwen2 trained from scratch, or a local
Hugging Face checkpoint, optionally 4-bit (bitsandbytes) and with LoRA adapters (peft).

Nothing is downloaded: ``model=hf`` takes a local directory (``model.path``).
"""

from __future__ import annotations

from pathlib import Path

from solvers.config import ConfigError, check_choice


def tiny_config(m: dict, tokenizer):
    """A LlamaConfig or Qwen2Config for a small model trained from scratch."""
    from transformers import LlamaConfig, Qwen2Config

    check_choice("model.arch", m.get("arch"), ("llama", "qwen2"))
    cls = LlamaConfig if m["arch"] == "llama" else Qwen2Config
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"],
        num_key_value_heads=m.get("num_key_value_heads") or m["num_attention_heads"],
        max_position_embeddings=m["max_position_embeddings"],
        tie_word_embeddings=m.get("tie_word_embeddings", True),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def quantization_config(q: dict):
    """BitsAndBytesConfig for ``quant=4bit``; None for ``quant=none``."""
    check_choice("quant.kind", q.get("kind"), ("none", "4bit"))
    if q["kind"] == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.get("quant_type", "nf4"),
        bnb_4bit_use_double_quant=q.get("double_quant", True),
        bnb_4bit_compute_dtype=getattr(torch, q.get("compute_dtype", "bfloat16")),
    )


def lora_config(p: dict):
    """LoraConfig for ``peft=lora``; None for ``peft=none``."""
    check_choice("peft.kind", p.get("kind"), ("none", "lora"))
    if p["kind"] == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(r=p["r"], lora_alpha=p["alpha"], lora_dropout=p["dropout"],
                      target_modules=list(p["target_modules"]), task_type="CAUSAL_LM")


def build_model(cfg: dict, tokenizer, init_from: str | None = None):
    """The model a run trains: from ``init_from`` (a checkpoint of an earlier stage), from
    ``model.path`` (``model=hf``), or freshly initialised from ``model`` sizes."""
    import torch
    from transformers import AutoModelForCausalLM

    m = cfg["model"]
    check_choice("model.kind", m.get("kind"), ("tiny", "hf"))
    path = init_from or (m.get("path") if m["kind"] == "hf" else None)
    if path:
        if not Path(path).is_dir():
            key = "init_from" if init_from else "model.path"
            raise ConfigError(key, f"no such checkpoint directory: {path}")
        kwargs = {}
        qc = quantization_config(cfg["quant"])
        if qc is not None:
            kwargs["quantization_config"] = qc
        dtype = m.get("dtype")
        if dtype:
            kwargs["dtype"] = getattr(torch, dtype)
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    torch.manual_seed(cfg["seed"])
    return AutoModelForCausalLM.from_config(tiny_config(m, tokenizer))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def place(model, cfg: dict):
    """Put ``model`` on the device the ``hardware`` config asks for, the one TRL's trainers
    would pick: the CPU with ``hardware.use_cpu: true``, else CUDA when there is a GPU (then
    Apple's MPS, then the CPU). A quantized model (``quant=4bit``) stays where bitsandbytes
    put it. Returns the model (on that device).

    >>> import torch
    >>> place(torch.nn.Linear(2, 2), {"hardware": {"use_cpu": True}}).weight.device.type
    'cpu'
    """
    import torch

    if cfg["hardware"].get("use_cpu", False):
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
        print("hardware: no GPU found (hardware.use_cpu is false): the model stays on the CPU")
    if getattr(model, "hf_quantizer", None) is not None:
        return model
    return model.to(device)
