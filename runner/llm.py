"""Talking to an OpenAI-compatible chat-completions endpoint: settings, retries, accounting."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore")

    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (Ollama); "
        "default: OpenAI's.",
    )
    llm_api_key: SecretStr | None = Field(default=None, description="API key of the endpoint.")
    llm_model: str = Field(default="gpt-4o-mini", description="Model for goal blocks.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one LLM call.")
    llm_max_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a call on 429, 5xx and connection errors."
    )
    llm_vision: bool = Field(
        default=False, description="Send a screenshot with every observation (vision models)."
    )
    llm_text_budget: int = Field(
        default=4000, ge=200, description="Characters of page text in an observation."
    )
    llm_prices: str = Field(
        default="{}",
        description='Price table, JSON: {"model": {"prompt": USD per 1M tokens, '
        '"completion": USD per 1M tokens}}.',
    )

    @field_validator("llm_prices")
    @classmethod
    def _a_price_table(cls, value: str) -> str:
        parse_prices(value)
        return value

    def price_table(self) -> dict[str, dict[str, float]]:
        return parse_prices(self.llm_prices)


def parse_prices(text: str) -> dict[str, dict[str, float]]:
    """The price table of `GLASSBOX_LLM_PRICES`; ValueError saying what is wrong with it."""
    try:
        table = json.loads(text or "{}")
    except ValueError:
        raise ValueError("not valid JSON") from None
    shape = 'expected {"model": {"prompt": number, "completion": number}}'
    if not isinstance(table, dict):
        raise ValueError(shape)
    try:
        return {str(m): {str(k): float(v) for k, v in p.items()} for m, p in table.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError(shape) from None


class ProviderError(Exception):
    """The provider could not be used; the message says what to check."""


@dataclass
class Completion:
    message: Any  # openai ChatCompletionMessage
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    raw: dict[str, Any]
    duration_ms: int


class LLMClient:
    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        import openai  # here: it takes a while to load, and most processes never call an LLM

        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
        self.client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=key,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
        self.prices = settings.price_table()

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(model)
        if not price:
            return 0.0
        return (
            prompt_tokens * price.get("prompt", 0.0)
            + completion_tokens * price.get("completion", 0.0)
        ) / 1_000_000

    async def chat(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> Completion:
        import openai

        started = time.monotonic()
        where = self.settings.llm_base_url or "api.openai.com"
        try:
            create: Any = self.client.chat.completions.create  # plain dicts, not its TypedDicts
            response = await create(model=model, messages=messages, tools=tools, tool_choice="auto")
        except openai.APITimeoutError:
            raise ProviderError(
                f"the LLM at {where} did not answer within {self.settings.llm_timeout_s:g} s "
                f"(GLASSBOX_LLM_TIMEOUT_S), after {self.settings.llm_max_retries} retries"
            ) from None
        except openai.APIConnectionError:
            raise ProviderError(
                f"cannot reach the LLM at {where} (check GLASSBOX_LLM_BASE_URL)"
            ) from None
        except openai.AuthenticationError:
            raise ProviderError(
                f"the LLM at {where} refused the API key (check GLASSBOX_LLM_API_KEY)"
            ) from None
        except openai.NotFoundError:
            raise ProviderError(
                f"the LLM at {where} does not know model {model!r} "
                "(check GLASSBOX_LLM_MODEL or the workflow's model)"
            ) from None
        except openai.APIStatusError as exc:
            raise ProviderError(
                f"the LLM at {where} answered HTTP {exc.status_code} "
                f"after {self.settings.llm_max_retries} retries: {_short(exc.message)}"
            ) from None
        if not response.choices:
            raise ProviderError(f"the LLM at {where} answered with no choices")
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Completion(
            message=response.choices[0].message,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.cost(model, prompt_tokens, completion_tokens),
            raw=response.model_dump(mode="json"),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    async def close(self) -> None:
        await self.client.close()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
