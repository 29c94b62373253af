"""The fake LLM servers, driven by the real (unpatched) openai and anthropic SDKs over real HTTP."""
import asyncio
import json
import time

import anthropic
import openai
import pytest

from tests.llm_servers import FakeAnthropic, FakeOpenAI

STEPS = [{"id": "s0", "text": "25 - 8 = 17. Left: 3, 17.\n"},
         {"id": "s1", "text": "17 + 3 = 20. Reached 20.\n"}]
EXPECTED = [{"id": "s0", "text": "So, 25 - 8 = 17. Left: 3, 17.\n"},
            {"id": "s1", "text": "So, 17 + 3 = 20. Reached 20.\n"}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["steps"],
          "properties": {"steps": {"type": "array", "items": {
              "type": "object", "additionalProperties": False, "required": ["id", "text"],
              "properties": {"id": {"type": "string"}, "text": {"type": "string"}}}}}}


def openai_request(steps=STEPS):
    return dict(model="gpt-test", temperature=0.7, max_completion_tokens=1000,
                messages=[{"role": "system", "content": "Paraphrase each step."},
                          {"role": "user", "content": json.dumps({"steps": steps})}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "paraphrase", "strict": True, "schema": SCHEMA}})


def anthropic_request(steps=STEPS):
    return dict(model="claude-test", max_tokens=1000, system="Paraphrase each step.",
                messages=[{"role": "user", "content": json.dumps({"steps": steps})}],
                tools=[{"name": "paraphrase", "description": "The rewritten steps.", "input_schema": SCHEMA}],
                tool_choice={"type": "tool", "name": "paraphrase"})


def openai_client(server, **kw):
    return openai.OpenAI(base_url=server.url, api_key="test", **{"max_retries": 2, **kw})


def anthropic_client(server, **kw):
    return anthropic.Anthropic(base_url=server.url, api_key="test", **{"max_retries": 2, **kw})


def openai_steps(completion):
    return json.loads(completion.choices[0].message.content)["steps"]


def anthropic_steps(message):
    return message.content[0].input["steps"]


# -- live requests -------------------------------------------------------------------------------

def test_openai_chat_completion(openai_server):
    completion = openai_client(openai_server).chat.completions.create(**openai_request())
    assert openai_steps(completion) == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [request] = openai_server.requests
    assert request["path"] == "/v1/chat/completions" and request["status"] == 200
    assert request["headers"]["authorization"] == "Bearer test"
    assert request["json"]["response_format"]["json_schema"]["name"] == "paraphrase"
    assert request["json"]["max_completion_tokens"] == 1000
    assert openai_server.errors == []


def test_openai_async_chat_completion(openai_server):
    async def call():
        async with openai.AsyncOpenAI(base_url=openai_server.url, api_key="test") as client:
            return await asyncio.gather(*(client.chat.completions.create(**openai_request()) for _ in range(3)))

    completions = asyncio.run(call())
    assert [openai_steps(c) for c in completions] == [EXPECTED] * 3
    assert all(c.usage.total_tokens > 0 for c in completions)
    assert openai_server.count("/chat/completions") == 3


def test_anthropic_message_with_forced_tool(anthropic_server):
    message = anthropic_client(anthropic_server).messages.create(**anthropic_request())
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "paraphrase"
    assert block.input["steps"] == EXPECTED
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    [request] = anthropic_server.requests
    assert request["path"] == "/v1/messages"
    # anthropic 2.13 sends the key as "Authorization: Bearer"; older SDKs sent "x-api-key"
    headers = request["headers"]
    assert headers.get("x-api-key") == "test" or headers.get("authorization") == "Bearer test"
    assert "anthropic-version" in request["headers"]
    assert request["json"]["tool_choice"] == {"type": "tool", "name": "paraphrase"}


def test_async_anthropic(anthropic_server):
    async def call():
        async with anthropic.AsyncAnthropic(base_url=anthropic_server.url, api_key="test") as client:
            return await client.messages.create(**anthropic_request())

    assert anthropic_steps(asyncio.run(call())) == EXPECTED


def test_pluggable_rewrite(openai_server):
    openai_server.rewrite = str.upper
    completion = openai_client(openai_server).chat.completions.create(**openai_request())
    assert openai_steps(completion)[0]["text"] == "25 - 8 = 17. LEFT: 3, 17.\n"


def test_bad_request_is_a_provider_error(openai_server, anthropic_server):
    request = openai_request()
    request["messages"][-1]["content"] = "not the steps JSON"
    with pytest.raises(openai.BadRequestError):
        openai_client(openai_server).chat.completions.create(**request)
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(anthropic_server).models.retrieve("nope")


# -- faults ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("server_cls, client, call, steps", [
    (FakeOpenAI, openai_client, lambda c: c.chat.completions.create(**openai_request()), openai_steps),
    (FakeAnthropic, anthropic_client, lambda c: c.messages.create(**anthropic_request()), anthropic_steps),
], ids=["openai", "anthropic"])
class TestFaults:
    def test_429_is_retried_after_retry_after_ms(self, server_cls, client, call, steps):
        with server_cls(retry_after=("5", "300")) as server:
            server.fail_next("429")
            start = time.monotonic()
            assert steps(call(client(server))) == EXPECTED
            elapsed = time.monotonic() - start
        # retry-after-ms (0.3 s) wins over Retry-After (5 s)
        assert 0.3 <= elapsed < 2
        assert server.count(server.MODEL_PATH) == 2
        assert [(r["status"], r["fault"]) for r in server.requests] == [(429, "429"), (200, None)]

    def test_429_error_body_when_retries_run_out(self, server_cls, client, call, steps):
        with server_cls() as server:
            server.fail_next("429", times=2)
            error = openai.RateLimitError if server_cls is FakeOpenAI else anthropic.RateLimitError
            with pytest.raises(error) as raised:
                call(client(server, max_retries=1))
        response = raised.value.response
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1" and response.headers["retry-after-ms"] == "50"
        body = response.json()
        if server_cls is FakeOpenAI:
            assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] is None
        else:
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert server.count(server.MODEL_PATH) == 2

    def test_500_is_retried(self, server_cls, client, call, steps):
        with server_cls() as server:
            server.fail_next("500")
            assert steps(call(client(server))) == EXPECTED
        assert [r["status"] for r in server.requests] == [500, 200]

    def test_timeout(self, server_cls, client, call, steps):
        with server_cls(delay=2) as server:
            server.fail_next("timeout")
            error = openai.APITimeoutError if server_cls is FakeOpenAI else anthropic.APITimeoutError
            start = time.monotonic()
            with pytest.raises(error):
                call(client(server, timeout=0.5, max_retries=0))
            assert time.monotonic() - start < 1.5
            assert server.count(server.MODEL_PATH) == 1
            # the fault is used up: the next request is answered at once
            assert steps(call(client(server, timeout=0.5, max_retries=0))) == EXPECTED

    def test_timeout_is_retried(self, server_cls, client, call, steps):
        with server_cls(delay=2) as server:
            server.fail_next("timeout")
            assert steps(call(client(server, timeout=0.3, max_retries=1))) == EXPECTED
            assert server.count(server.MODEL_PATH) == 2

    def test_change_number(self, server_cls, client, call, steps):
        with server_cls() as server:
            server.fail_next("change_number")
            got = steps(call(client(server)))
        assert got[0]["text"] == "So, 26 - 8 = 17. Left: 3, 17.\n"
        assert got[1:] == EXPECTED[1:]

    def test_drop_step(self, server_cls, client, call, steps):
        with server_cls() as server:
            server.fail_next("drop_step")
            assert steps(call(client(server))) == EXPECTED[:1]

    def test_faults_are_consumed_in_order(self, server_cls, client, call, steps):
        with server_cls() as server:
            server.fail_next("drop_step")
            server.fail_next("change_number", times=2)
            c = client(server)
            answers = [steps(call(c)) for _ in range(4)]
        assert [len(a) for a in answers] == [1, 2, 2, 2]
        assert [a[0]["text"].startswith("So, 26") for a in answers] == [False, True, True, False]


def test_openai_malformed(openai_server):
    openai_server.fail_next("malformed")
    completion = openai_client(openai_server).chat.completions.create(**openai_request())
    assert completion.choices[0].message.content == "{not json"


def test_anthropic_malformed(anthropic_server):
    anthropic_server.fail_next("malformed")
    message = anthropic_client(anthropic_server).messages.create(**anthropic_request())
    assert message.content[0].input == {"steps": "oops"}


def test_fault_on_another_path(openai_server):
    openai_server.fail_next("500", path="/files")
    client = openai_client(openai_server, max_retries=0)
    assert openai_steps(client.chat.completions.create(**openai_request())) == EXPECTED
    with pytest.raises(openai.InternalServerError):
        client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(ValueError):
        openai_server.fail_next("503")


# -- batches ---------------------------------------------------------------------------------------

def wait_until(retrieve, done, limit=10):
    for _ in range(limit):
        batch = retrieve()
        if done(batch):
            return batch
    raise AssertionError(f"batch not done after {limit} retrieves: {batch}")


def openai_batch_file(n):
    lines = [{"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions", "body": openai_request()}
             for i in range(n)]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_openai_batch(openai_server):
    client = openai_client(openai_server)
    uploaded = client.files.create(file=("paraphrase.jsonl", openai_batch_file(3)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.filename == "paraphrase.jsonl"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.status == "validating" and batch.output_file_id is None

    # a new client, as after the process was killed and restarted, picks the batch up by id
    client = openai_client(openai_server)
    batch = wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert openai_server.count(f"/batches/{batch.id}") == 2
    assert batch.request_counts.total == batch.request_counts.completed == 3
    assert batch.error_file_id is None

    lines = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["t0", "t1", "t2"]
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert json.loads(body["choices"][0]["message"]["content"])["steps"] == EXPECTED
        assert body["usage"]["total_tokens"] > 0


def test_openai_batch_item_faults(openai_server):
    openai_server.fail_next("drop_step")
    openai_server.fail_next("500")
    client = openai_client(openai_server)
    uploaded = client.files.create(file=("in.jsonl", openai_batch_file(3)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    batch = wait_until(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
    lines = client.files.content(batch.output_file_id).text.splitlines()
    output = {line["custom_id"]: line for line in map(json.loads, lines)}
    [error] = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert set(output) == {"t0", "t2"} and error["custom_id"] == "t1"
    assert error["response"]["status_code"] == 500
    assert len(json.loads(output["t0"]["response"]["body"]["choices"][0]["message"]["content"])["steps"]) == 1


def anthropic_batch_requests(n):
    return [{"custom_id": f"t{i}", "params": anthropic_request()} for i in range(n)]


def test_anthropic_batch(anthropic_server):
    client = anthropic_client(anthropic_server)
    batch = client.messages.batches.create(requests=anthropic_batch_requests(3))
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 3

    client = anthropic_client(anthropic_server)  # as after a restart
    batch = wait_until(lambda: client.messages.batches.retrieve(batch.id),
                       lambda b: b.processing_status == "ended")
    assert batch.request_counts.succeeded == 3 and batch.ended_at is not None
    assert batch.results_url == f"{anthropic_server.url}/v1/messages/batches/{batch.id}/results"

    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == ["t0", "t1", "t2"]
    for r in results:
        assert r.result.type == "succeeded"
        assert r.result.message.content[0].input["steps"] == EXPECTED
        assert r.result.message.usage.output_tokens > 0
    assert anthropic_server.count("/results") == 1


def test_anthropic_batch_item_faults(anthropic_server):
    anthropic_server.fail_next("malformed")
    anthropic_server.fail_next("429")
    anthropic_server.fail_next("timeout")
    client = anthropic_client(anthropic_server)
    batch = client.messages.batches.create(requests=anthropic_batch_requests(4))
    batch = wait_until(lambda: client.messages.batches.retrieve(batch.id),
                       lambda b: b.processing_status == "ended")
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (2, 1, 1)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["t0"].message.content[0].input == {"steps": "oops"}
    assert results["t1"].type == "errored" and results["t1"].error.error.type == "rate_limit_error"
    assert results["t2"].type == "expired"
    assert results["t3"].message.content[0].input["steps"] == EXPECTED


def test_async_anthropic_batch_results(anthropic_server):
    anthropic_server.polls_until_done = 0

    async def call():
        async with anthropic.AsyncAnthropic(base_url=anthropic_server.url, api_key="test") as client:
            batch = await client.messages.batches.create(requests=anthropic_batch_requests(2))
            assert batch.processing_status == "ended"
            return [r async for r in await client.messages.batches.results(batch.id)]

    assert [r.result.message.content[0].input["steps"] for r in asyncio.run(call())] == [EXPECTED] * 2


def test_unknown_batch_is_404(openai_server, anthropic_server):
    with pytest.raises(openai.NotFoundError):
        openai_client(openai_server).batches.retrieve("batch_nope")
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(anthropic_server).messages.batches.retrieve("msgbatch_nope")
