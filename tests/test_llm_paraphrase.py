"""paraphraser=openai | anthropic end to end: the real SDKs against the fake provider
servers of tests/llm_servers.py, through the whole pipeline. The servers count requests, so
"never pays twice" is a count, not a claim."""

import json

import pytest
from omegaconf import OmegaConf

from generate import fidelity, pipeline, validate
from solvers import countdown as cd
from solvers.config import ConfigError
from solvers.trace import collapse
from tests.conftest import ROOT

SECRET = "sk-test-do-not-leak-0123456789"
N = 12


def llm_cfg(gen_cfg, out, server, provider, cache, **para):
    p = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "paraphraser" / f"{provider}.yaml"))
    p.update({"base_url": server.url, "model": "fake-model", "cache_dir": str(cache), "timeout": 5,
              "max_retries": 3, "batch_poll_seconds": 0.01, "concurrency": 4, **para})
    cfg = gen_cfg(out, n=N, n_val=0, n_test=0, shard_size=4)
    cfg["paraphraser"] = p
    return cfg


def records(out):
    return [json.loads(x) for f in sorted((out / "train").glob("shard-*.jsonl")) for x in f.read_text().splitlines()]


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, openai_server, anthropic_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    server = openai_server if request.param == "openai" else anthropic_server
    return request.param, server, "/chat/completions" if request.param == "openai" else "/v1/messages"


def test_records_pass_the_validator_and_a_rerun_pays_nothing(provider, gen_cfg, tmp_path, capsys):
    name, server, path = provider
    out, _ = pipeline.run(llm_cfg(gen_cfg, tmp_path / "a", server, name, tmp_path / "cache"))
    rs = records(out)
    assert len(rs) == N
    for r in rs:
        assert validate.check(r, cd, 2048) is None
        page = collapse(r["Reasoning"])
        assert page.startswith("So, ")             # the steps' words came from the model
        assert page.endswith(f"Answer: {r['Answer']}")
    man = json.loads((out / "manifest.json").read_text())
    llm = man["llm"]
    assert llm["provider"] == name and llm["requests"] == server.count(path) == N  # one request per trace
    assert llm["input_tokens"] > 0 and llm["output_tokens"] > 0 and llm["estimated_cost_usd"] > 0
    assert man["fingerprint"]["paraphraser"]["model"] == "fake-model"
    assert "distinct_2" in man["splits"]["train"]["stats"]
    # the same config into another directory: every answer comes from the cache
    out2, _ = pipeline.run(llm_cfg(gen_cfg, tmp_path / "b", server, name, tmp_path / "cache"))
    assert server.count(path) == N
    assert json.loads((out2 / "manifest.json").read_text())["llm"]["cached"] == N
    assert records(out2) == [{**r} for r in rs]
    # the API key is nowhere: not in the outputs, the cache, or what was printed
    printed = capsys.readouterr()
    for f in [*tmp_path.rglob("*")]:
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in printed.out + printed.err


def test_a_killed_run_resumes_without_repeating_requests(provider, gen_cfg, tmp_path):
    name, server, path = provider

    class Killed(Exception):
        pass

    def kill_after_first_chunk(split, start):
        raise Killed

    cfg = llm_cfg(gen_cfg, tmp_path / "out", server, name, tmp_path / "cache")
    with pytest.raises(Killed):
        pipeline.run(cfg, on_chunk=kill_after_first_chunk)
    assert server.count(path) == 4                  # one chunk of shard_size 4 was paid for
    out, _ = pipeline.run(cfg)
    assert server.count(path) == N                  # the rest, and nothing twice
    man = json.loads((out / "manifest.json").read_text())
    assert man["llm"]["requests"] == N and man["counts"] == {"train": N}


@pytest.mark.parametrize("fault", ["429", "500", "timeout"])
def test_rate_limits_server_errors_and_timeouts_are_retried(fault, provider, gen_cfg, tmp_path):
    name, server, path = provider
    server.delay = 2
    server.fail_next(fault)
    cfg = llm_cfg(gen_cfg, tmp_path / "out", server, name, tmp_path / "cache", timeout=0.5)
    out, _ = pipeline.run(cfg)
    assert len(records(out)) == N
    assert server.count(path) == N + 1              # the failed request, retried once by the SDK
    assert json.loads((out / "manifest.json").read_text())["llm"]["failed"] == 0


@pytest.mark.parametrize("fault, reason", [
    ("change_number", "paraphrase_lost_number"),
    ("drop_step", "paraphrase_structure"),
    ("malformed", "paraphrase_malformed"),
])
def test_unfaithful_answers_are_retried_with_the_reason_then_rejected(fault, reason, provider, gen_cfg, tmp_path):
    name, server, path = provider
    server.fail_next(fault)
    out, _ = pipeline.run(llm_cfg(gen_cfg, tmp_path / "a", server, name, tmp_path / "c1"))
    man = json.loads((out / "manifest.json").read_text())
    assert man["llm"]["fidelity_retries"] == 1 and man["counts"] == {"train": N}
    retries = [r["json"] for r in server.requests if r["path"].endswith(path) and len(r["json"]["messages"]) > 2]
    assert len(retries) == 1
    told = json.loads(retries[0]["messages"][-1]["content"])
    assert told["problems"] and len(told["steps"]) > 0   # the model was told what went wrong, and got the steps again
    # without the retry, the trace is rejected with the named reason and replaced
    server.fail_next(fault)
    out, _ = pipeline.run(llm_cfg(gen_cfg, tmp_path / "b", server, name, tmp_path / "c2", retry_on_reject=False))
    man = json.loads((out / "manifest.json").read_text())
    assert man["rejections"].get(reason) == 1 and man["counts"] == {"train": N}


def test_a_request_that_keeps_failing_is_counted_not_fatal(provider, gen_cfg, tmp_path):
    name, server, path = provider
    server.fail_next("500", times=2)
    # one request at a time, so that the two failures are the same request and its one retry
    out, _ = pipeline.run(llm_cfg(gen_cfg, tmp_path / "out", server, name, tmp_path / "cache", max_retries=1,
                                  concurrency=1))
    man = json.loads((out / "manifest.json").read_text())
    assert man["rejections"].get("paraphrase_failed") == 1 and man["llm"]["failed"] == 1
    assert man["counts"] == {"train": N}


def test_batch_mode_resumes_by_batch_id_after_a_kill(provider, gen_cfg, tmp_path, monkeypatch):
    name, server, path = provider
    batches = "/batches" if name == "openai" else "/messages/batches"
    server.polls_until_done = 3
    import generate.llm as llm

    class Killed(Exception):
        pass

    def killed_while_polling(seconds):
        raise Killed

    cfg = llm_cfg(gen_cfg, tmp_path / "out", server, name, tmp_path / "cache", batch=True)
    monkeypatch.setattr(llm.time, "sleep", killed_while_polling)  # the process dies while it waits
    with pytest.raises(Killed):
        pipeline.run(cfg)
    created = [r for r in server.requests if r["method"] == "POST" and r["path"].endswith(batches)]
    assert len(created) == 1
    saved = list((tmp_path / "out" / ".work" / "train").glob("*.batch.json"))
    assert len(saved) == 1
    monkeypatch.undo()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    out, _ = pipeline.run(cfg)
    created = [r for r in server.requests if r["method"] == "POST" and r["path"].endswith(batches)]
    assert len(created) == N // 4                   # one batch per chunk: the first was not made again
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": N} and man["llm"]["batch"] is True
    assert man["llm"]["requests"] == N and server.count(path) == 0   # nothing went through the live endpoint
    for r in records(out):
        assert collapse(r["Reasoning"]).startswith("So, ")


def test_missing_api_key_is_an_error_naming_the_variable(gen_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = gen_cfg(tmp_path / "out")
    cfg["paraphraser"] = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "paraphraser" / "openai.yaml"))
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as e:
        pipeline.settings(cfg)
    assert e.value.key == "paraphraser.api_key_env"


@pytest.mark.parametrize("original, rewritten, reason", [
    ("25 - 8 = 17. Left: 3, 17.\n", "I try 25 - 8 = 17, leaving 3 and 17.\n", None),        # faithful
    ("25 - 8 = 17. Left: 3, 17.\n", "I try 25 - 8 = 17, leaving 17 and 3.\n", None),        # reordered list
    ("25 - 8 = 17. Left: 3, 17.\n", "I try 25 - 8 = 17.\n", "paraphrase_lost_number"),      # dropped the 3
    ("25 - 8 = 17. Left: 3, 17.\n", "25 - 8 = 17, 17 * 3 = 51. Left: 3, 17.\n", "paraphrase_new_number"),
    ("25 - 8 = 17. Left: 3, 17.\n", "25 - 8 = 17 and 17 - 3 = 17. Left: 3, 17.\n", "paraphrase_false_arithmetic"),
    ("25 - 8 = 17. Left: 3, 17.\n", "25 - 8 = 17 and 25 - 17 = 8. Left: 3, 17.\n", "paraphrase_new_equation"),
    ("25 - 8 = 17. Left: 3, 17.\n", "(25 - 8) = 17. Left: 3, 17.\n", None),                 # same equation
    ("25 - 8 = 17. Left: 3, 17.\n", "25 - 8 = 17.\nLeft: 3, 17.\n", "paraphrase_structure"),  # two lines
    ("25 - 8 = 17. Left: 3, 17.\n", "25 - 8 = 17. Left: 3, 17.", "paraphrase_structure"),     # no newline
    ("74 ÷ 29: try 2. 2 × 29 = 58.\n", "Say 2: 2 * 29 = 58, under 74, with 29.\n", None),    # × written as *
])
def test_fidelity_table(original, rewritten, reason):
    got = fidelity.check(original, rewritten)
    assert (got.split(":")[0] if got else None) == reason


def test_python_m_generate_against_a_local_openai_compatible_server(openai_server, cli, tmp_path, monkeypatch):
    # as a user runs it against vLLM or Ollama: no API key, the server's URL
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "out"
    args = ["task=countdown", "paraphraser=openai", f"paraphraser.base_url={openai_server.url}",
            "paraphraser.model=local-model", f"paraphraser.cache_dir={tmp_path / 'cache'}", "n=6", "n_val=0",
            "n_test=0", f"out={out}", "progress=false"]
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert openai_server.count("/chat/completions") == 6
    for r in records(out):
        assert validate.check(r, cd, 2048) is None and collapse(r["Reasoning"]).startswith("So, ")
    # a second run of the same command into a fresh directory asks the server nothing
    res = cli(*args[:-2], f"out={tmp_path / 'again'}", "progress=false")
    assert res.returncode == 0 and openai_server.count("/chat/completions") == 6
