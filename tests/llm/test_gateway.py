"""Model chains through the real OpenAI-compatible adapter, against a server on 127.0.0.1."""

from __future__ import annotations

import pydantic_ai.models
import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError

from forgeline.config import ModelsConfig, Settings
from forgeline.errors import ConfigError
from forgeline.llm.gateway import ModelRegistry, build_chain, build_model
from tests.llm.openai_server import OpenAIStub


@pytest.fixture(autouse=True)
def local_requests_allowed(monkeypatch):
    """The suite forbids real model requests; these go to a server inside the test."""
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)


class Answer(BaseModel):
    word: str


def settings_for(**stubs: OpenAIStub) -> Settings:
    return Settings(
        providers={name: {"base_url": stub.base_url} for name, stub in stubs.items()},
        model_retries=0,
        model_timeout=1.0,
    )


async def ask(specs: list[str], settings: Settings) -> str:
    agent = Agent(build_chain(specs, settings), output_type=Answer)
    return (await agent.run("say a word")).output.word


@pytest.mark.parametrize(
    "failure",
    [("status", 500), ("sleep", 3.0), ("garbage", "this is not a completion")],
    ids=["http-500", "timeout", "malformed-body"],
)
async def test_a_failing_primary_falls_back_to_the_next_model(failure):
    with OpenAIStub([failure]) as primary, OpenAIStub([("ok", {"word": "backup"})]) as backup:
        word = await ask(
            ["one:big-model", "two:small-model"], settings_for(one=primary, two=backup)
        )
    assert word == "backup"
    assert len(primary.requests) == 1
    assert [r["body"]["model"] for r in backup.requests] == ["small-model"]


async def test_the_primary_answers_when_it_can():
    with OpenAIStub([("ok", {"word": "primary"})]) as primary, OpenAIStub([]) as backup:
        word = await ask(["one:m", "two:m"], settings_for(one=primary, two=backup))
    assert word == "primary"
    assert backup.requests == []


async def test_a_single_model_failing_is_a_clear_error():
    with OpenAIStub([("status", 500)]) as only, pytest.raises(ModelHTTPError, match="500"):
        await ask(["one:m"], settings_for(one=only))


async def test_retries_with_backoff_before_failing_over():
    script = [("status", 503), ("ok", {"word": "second try"})]
    with OpenAIStub(script) as flaky, OpenAIStub([]) as backup:
        settings = settings_for(one=flaky, two=backup).model_copy(update={"model_retries": 1})
        word = await ask(["one:m", "two:m"], settings)
    assert word == "second try"
    assert len(flaky.requests) == 2 and backup.requests == []


async def test_the_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("STUB_PROVIDER_KEY", "sk-test-secret-value")
    with OpenAIStub([("ok", {"word": "hi"})]) as stub:
        settings = Settings(
            providers={"mine": {"base_url": stub.base_url, "api_key_env": "STUB_PROVIDER_KEY"}}
        )
        assert await ask(["mine:m"], settings) == "hi"
    assert stub.requests[0]["headers"]["authorization"] == "Bearer sk-test-secret-value"
    assert "sk-test-secret-value" not in repr(settings)


def test_a_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("STUB_PROVIDER_KEY", raising=False)
    settings = Settings(
        providers={
            "mine": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "STUB_PROVIDER_KEY"}
        }
    )
    with pytest.raises(ConfigError, match="STUB_PROVIDER_KEY"):
        build_model("mine:m", settings)


def test_chains_come_from_lists_or_comma_separated_strings():
    models = ModelsConfig(default="a:x", coder=["b:y", "c:z"], fixer="d:1, e:2")
    assert models.for_role("planner") == ["a:x"]
    assert models.for_role("coder") == ["b:y", "c:z"]
    assert models.for_role("fixer") == ["d:1", "e:2"]


def test_each_role_reports_its_configured_chain():
    settings = Settings(
        providers={"p": {"base_url": "http://127.0.0.1:9/v1"}},
        models=ModelsConfig(default="p:big", reviewer=["p:big", "p:small"]),
    )
    registry = ModelRegistry.from_settings(settings)
    assert registry.spec("planner") == "p:big"
    assert registry.spec("reviewer") == "p:big, p:small"
    assert registry["planner"] is registry["coder"]  # one client per distinct chain


async def test_closing_the_registry_closes_every_client_of_every_chain():
    with OpenAIStub([("ok", {"word": "one"})]) as primary:
        settings = settings_for(one=primary).model_copy(
            update={"models": ModelsConfig(default="one:m", reviewer=["one:big", "one:small"])}
        )
        registry = ModelRegistry.from_settings(settings)
        agent = Agent(registry["planner"], output_type=Answer)
        assert (await agent.run("say a word")).output.word == "one"
        clients = [registry["planner"].client]  # type: ignore[attr-defined]
        clients += [m.client for m in registry["reviewer"].models]  # type: ignore[attr-defined]
        assert not any(c.is_closed() for c in clients)
        await registry.aclose()
    assert all(c.is_closed() for c in clients)  # no connection left open to the provider


def test_an_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuchprovider"):
        build_model("nosuchprovider:model")
