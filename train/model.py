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


def check_quant(cfg: dict) -> None:
    """Refuse ``quant=4bit`` where it cannot run, before anything is loaded: it needs
    ``model=hf`` (a checkpoint to quantize), ``peft=lora`` (4-bit weights are frozen; only
    adapters train: QLoRA), a CUDA GPU and bitsandbytes (``pip install -e ".[train,gpu]"``)."""
    if (cfg.get("quant") or {}).get("kind", "none") == "none":
        return
    if cfg["model"]["kind"] != "hf":
        raise ConfigError("quant", "quant=4bit quantizes a checkpoint: use it with model=hf model.path=DIR")
    if (cfg.get("peft") or {}).get("kind", "none") != "lora":
        raise ConfigError("quant", "quant=4bit freezes the 4-bit weights, so only LoRA adapters can train: add peft=lora")
    import torch
    if not torch.cuda.is_available():
        raise ConfigError("quant", "quant=4bit (QLoRA) needs a CUDA GPU and this machine has none; use quant=none "
                          "here (LoRA alone: peft=lora) and quant=4bit hardware=gpu on a GPU machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("quant", 'quant=4bit needs bitsandbytes: pip install -e ".[train,gpu]"') from None


def lora_config(p: dict, new_token_ids: list[int] | None = None):
    """LoraConfig for ``peft=lora``; None for ``peft=none``. ``new_token_ids``: tokens added
    by ``tokenizer.add_markers``, whose embedding rows train beside the adapters (peft's
    ``trainable_token_indices``; a frozen mean row would never learn what ``<backtrack>`` means)."""
    check_choice("peft.kind", p.get("kind"), ("none", "lora"))
    if p["kind"] == "none":
        return None
    from peft import LoraConfig

    extra = {"trainable_token_indices": list(new_token_ids)} if new_token_ids else {}
    return LoraConfig(r=p["r"], lora_alpha=p["alpha"], lora_dropout=p["dropout"],
                      target_modules=list(p["target_modules"]), task_type="CAUSAL_LM", **extra)


def fit_embeddings(model, tokenizer, first_new: int, add_markers: bool) -> list[int]:
    """Make the model's embeddings fit the tokenizer; return the ids of the rows set here.

    A tokenizer with more tokens than the input embedding has rows would crash the first
    batch that uses one (torch.embedding: IndexError): without ``tokenizer.add_markers``
    that is a ConfigError naming both sizes. With it, the input and output embeddings grow
    to ``len(tokenizer)`` rows, and the rows of every token from ``first_new`` on (those
    add_markers added, or that the matrix lacked) are set to the mean of the rows of tokens
    ``0 .. first_new - 1``. A padded matrix (Qwen2.5: 151,936 rows for 151,665 tokens) is not
    resized: the new ids fall on padding rows nobody trained, which get the mean too.
    transformers' ``mean_resizing`` is not used: it samples around the mean, and only for
    rows a resize adds, never for the padding rows of a padded matrix.
    """
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    size = len(tokenizer)
    if size > rows and not add_markers:
        raise ConfigError("tokenizer.add_markers", f"the tokenizer has {size} tokens but the model's embedding matrix "
                          f"has {rows} rows, so ids {rows}..{size - 1} would crash training (IndexError in "
                          "torch.embedding); set tokenizer.add_markers=true to resize the embeddings (new rows: the "
                          "mean of the others), or use the tokenizer saved with the checkpoint unchanged")
    if not add_markers:
        return []
    first_new = min(first_new, rows)
    if size > rows:
        model.resize_token_embeddings(size, mean_resizing=False)
    new = list(range(first_new, size))
    if new:
        with torch.no_grad():
            for emb in {id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings())
                        if e is not None}.values():
                emb.weight[new] = emb.weight[:first_new].float().mean(0).to(emb.weight.dtype)
    return new


def build_model(cfg: dict, tokenizer, init_from: str | None = None):
    """The model a run trains: from ``init_from`` (a checkpoint of an earlier stage), from
    ``model.path`` (``model=hf``), or freshly initialised from ``model`` sizes."""
    import torch
    from transformers import AutoModelForCausalLM

    m = cfg["model"]
    check_choice("model.kind", m.get("kind"), ("tiny", "hf"))
    check_quant(cfg)
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
        if (Path(path) / "adapter_config.json").exists():
            return _load_adapter(path, tokenizer, kwargs)
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    torch.manual_seed(cfg["seed"])
    return AutoModelForCausalLM.from_config(tiny_config(m, tokenizer))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def expose_lm_head_bias(model) -> None:
    """TRL's fused LM head reads ``lm_head.weight`` and ``lm_head.bias``; peft's wrapper for
    trainable token rows (``lora_config(new_token_ids=...)``) answers ``weight`` with the
    rows merged in but has no ``bias``. Give it the wrapped layer's (bypassing nn.Module's
    registration, so no parameter is counted twice)."""
    try:
        from peft.utils.other import TrainableTokensWrapper
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and "bias" not in module.__dict__:
            object.__setattr__(module, "bias", getattr(module.original_module, "bias", None))


def _load_adapter(path, tokenizer, kwargs: dict):
    """A LoRA checkpoint (``init_from`` an earlier stage with ``peft=lora``): its base model,
    grown to the tokenizer first when ``tokenizer.add_markers`` added rows (the adapter
    holds the resized embeddings), then the adapter, still trainable."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    base_path = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    if not base_path or not Path(base_path).is_dir():
        raise ConfigError("init_from", f"{path} is a LoRA adapter whose base model {base_path!r} is not a local directory")
    base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    if base.get_input_embeddings().weight.shape[0] < len(tokenizer):
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return PeftModel.from_pretrained(base, str(path), is_trainable=True)


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
