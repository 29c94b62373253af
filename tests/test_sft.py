"""train/sft.py's trainer: TRL's loss on every step, TRL's metrics only on the steps that log.

TRL 1.16's SFTTrainer computes entropy and mean token accuracy with ``.item()`` on every
micro-batch; ``trainer_class()`` repeats TRL's loss without them on the steps that do not log.
These tests pin that reliance on TRL's private code: the repeated lines must still be TRL's,
the loss must be TRL's to the bit, and the logged metrics must be those TRL computes.
"""

import inspect

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

RECORDS = [{"Question": f"Use {a} and {b} to make {a + b}.", "Reasoning": f"{a} + {b} = {a + b}\nAnswer: {a} + {b}"}
           for a in range(1, 7) for b in range(3, 7)]  # 24 rows of 30 to 40 tokens


def make_trainer(tmp_path, cls=None, seed=0, **args):
    """A trainer over a 2-layer model built from scratch, seeded so that two calls build the
    same model and draw the same batches."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from train.model import tiny_config
    from train.sft import examples, trainer_class
    from train.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer([r["Question"] + r["Reasoning"] for r in RECORDS])
    m = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "max_position_embeddings": 128}
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(m, tok))
    rows, _ = examples(RECORDS, tok, mask_erased=False, max_length=None)
    config = SFTConfig(**{"output_dir": str(tmp_path / "out"), "use_cpu": True, "bf16": False,
                          "gradient_checkpointing": False, "dataloader_num_workers": 0, "report_to": "none",
                          "save_strategy": "no", "disable_tqdm": True, "completion_only_loss": True,
                          "per_device_train_batch_size": 4, "learning_rate": 1e-2, "logging_steps": 3,
                          "max_steps": 6, "seed": seed, **args})
    trainer = (cls or trainer_class())(model=model, args=config, train_dataset=Dataset.from_list(rows),
                                       processing_class=tok)
    trainer.state.logging_steps = config.logging_steps  # as train() sets it, for the tests that call compute_loss
    return trainer


def a_batch(trainer):
    trainer.model.train()
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def test_trl_still_computes_its_loss_with_the_lines_the_quiet_loss_repeats():
    """The pin on TRL's private code: when this fails, TRL's SFTTrainer.compute_loss changed
    (an upgrade); read the new one and bring quiet_loss and TRL_LOSS_LINES in line with it."""
    from trl import SFTTrainer

    from train.sft import TRL_LOSS_LINES, trainer_class

    trl_source = inspect.getsource(SFTTrainer.compute_loss)
    missing = [line for line in TRL_LOSS_LINES if line not in trl_source]
    assert not missing, f"TRL's SFTTrainer.compute_loss no longer has: {missing}"
    for name in ("entropy", "mean_token_accuracy"):  # the metrics the quiet steps skip are still TRL's
        assert f'self._metrics[mode]["{name}"].append(' in trl_source
    ours = inspect.getsource(trainer_class().quiet_loss)
    positions = [ours.find(line) for line in TRL_LOSS_LINES[:9]]  # the loss lines, in TRL's order
    assert -1 not in positions and positions == sorted(positions), positions


@pytest.mark.parametrize("loss_type", ["nll", "dft"])
@pytest.mark.parametrize("given_count", [False, True])  # the Trainer passes num_items_in_batch; eval does not
def test_the_quiet_loss_and_its_gradients_are_trls_to_the_bit(tmp_path, loss_type, given_count):
    from trl import SFTTrainer

    trainer = make_trainer(tmp_path, loss_type=loss_type)
    batch = a_batch(trainer)
    n = (batch["labels"] != -100).sum() if given_count else None
    assert trainer.state.global_step == 0 and not trainer.logs_this_step()  # step 1 of logging_steps=3

    def loss_and_grads(compute):
        trainer.model.zero_grad()
        loss = compute(trainer.model, dict(batch), num_items_in_batch=n)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    ours, our_grads = loss_and_grads(trainer.compute_loss)
    assert not trainer._metrics["train"]["entropy"]  # the quiet path ran
    theirs, their_grads = loss_and_grads(lambda *a, **k: SFTTrainer.compute_loss(trainer, *a, **k))
    assert len(trainer._metrics["train"]["entropy"]) == 1  # TRL's own ran
    assert torch.equal(ours, theirs), (ours.item(), theirs.item())
    assert len(our_grads) == len(their_grads) > 0 and all(map(torch.equal, our_grads, their_grads))


def test_a_step_that_does_not_log_makes_no_host_sync_beyond_the_model_forward(tmp_path, host_reads):
    trainer = make_trainer(tmp_path)
    batch = a_batch(trainer)
    n = (batch["labels"] != -100).sum()

    def count(call) -> dict:
        before = dict(host_reads)
        call()
        return {k: host_reads[k] - before[k] for k in host_reads}

    forward = count(lambda: trainer.model(**dict(batch, use_cache=False), fused_lm_head=True))
    quiet = count(lambda: trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n))
    assert quiet == forward, (quiet, forward)  # nothing beyond what the model itself does
    trainer.state.global_step = 2  # the next step, 3, logs
    logging = count(lambda: trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n))
    # TRL's metrics: entropy and accuracy (an .item() and a `num_valid > 0` each), the token
    # count, and the quiet step's tokens added to it
    assert logging["item"] - forward["item"] == 4 and logging["__bool__"] - forward["__bool__"] == 2, logging
    assert len(trainer._metrics["train"]["entropy"]) == 1


def test_logs_this_step_follows_the_trainers_logging_rule(tmp_path):
    from transformers.trainer_callback import DefaultFlowCallback, TrainerControl

    for args in ({"logging_steps": 3}, {"logging_steps": 3, "logging_first_step": True}, {"logging_steps": 1},
                 {"logging_strategy": "no"}):
        trainer = make_trainer(tmp_path, **args)
        for done in range(7):
            trainer.state.global_step = done + 1
            control = DefaultFlowCallback().on_step_end(trainer.args, trainer.state, TrainerControl())
            trainer.state.global_step = done
            assert trainer.logs_this_step() == control.should_log, (args, done + 1)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_a_short_run_logs_trls_metrics_of_each_logging_step(tmp_path, accumulation):
    """Seven steps logging every third, against TRL's own trainer logging every step: the
    logged entropy and token accuracy at steps 3 and 6 are TRL's for those steps, num_tokens
    counts every step (step 7's in the end-of-training summary), the loss is the mean of TRL's,
    and between logging steps nothing was computed."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class Buffered(TrainerCallback):
        """How many entropy values wait in the trainer's buffer as each step ends (before it logs)."""
        def __init__(self):
            self.sizes = []

        def on_step_end(self, args, state, control, **kwargs):
            self.sizes.append(len(ours._metrics["train"].get("entropy", [])))  # get: no empty list left

    ours = make_trainer(tmp_path / "ours", gradient_accumulation_steps=accumulation, max_steps=7)
    buffered = Buffered()
    ours.add_callback(buffered)
    ours.train()
    theirs = make_trainer(tmp_path / "theirs", cls=SFTTrainer, gradient_accumulation_steps=accumulation,
                          max_steps=7, logging_steps=1)
    theirs.train()

    assert buffered.sizes == [0, 0, accumulation, 0, 0, accumulation, 0]
    logged = {h["step"]: h for h in ours.state.log_history if "loss" in h}
    every = {h["step"]: h for h in theirs.state.log_history if "loss" in h}
    assert sorted(logged) == [3, 6] and sorted(every) == [1, 2, 3, 4, 5, 6, 7]
    for step in (3, 6):
        for key in ("entropy", "mean_token_accuracy"):
            assert logged[step][key] == pytest.approx(every[step][key], rel=1e-5), (step, key)
        assert logged[step]["num_tokens"] == every[step]["num_tokens"]
        window = [every[s]["loss"] for s in range(step - 2, step + 1)]
        assert logged[step]["loss"] == pytest.approx(sum(window) / 3, abs=1e-3)
    assert 0 < logged[6]["mean_token_accuracy"] <= 1 and logged[6]["entropy"] > 0
    summary = ours.state.log_history[-1]
    assert "train_loss" in summary and summary["num_tokens"] == every[7]["num_tokens"]
    assert summary["train_loss"] == pytest.approx(theirs.state.log_history[-1]["train_loss"], rel=1e-5)
