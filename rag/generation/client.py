"""Chat completions through any OpenAI-compatible server (vLLM, llama.cpp's server)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rag.config import GeneratorConfig
from rag.errors import GeneratorUnavailableError
from rag.types import Generation


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed completion; the last one carries usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done: bool = False


class Generator:
    """Talks to an OpenAI-compatible chat-completions server with the ``openai`` client.

    Args:
        config: generator settings.
        base_url: the server's ``/v1`` URL (overrides ``config.url``, e.g. the local server's).

    Example:
        >>> generator = Generator(settings.generator, base_url="http://127.0.0.1:8080/v1").warm_up()  # doctest: +SKIP
        >>> messages = [{"role": "user", "content": "Say hello."}]
        >>> generator.generate(messages).text  # doctest: +SKIP
        'Hello!'
        >>> "".join(delta.text for delta in generator.stream(messages))  # doctest: +SKIP
        'Hello!'
    """

    def __init__(self, config: GeneratorConfig, base_url: str | None = None) -> None:
        self.config = config
        self.base_url = base_url or config.url
        self._client = None
        self._model = config.model

    def warm_up(self) -> Generator:
        """Create the client and learn the served model's name when none is configured.

        Raises:
            GeneratorUnavailableError: when the server cannot be reached.
        """
        if self._client is None:
            from openai import OpenAI

            if not self.base_url:
                raise GeneratorUnavailableError("no generator URL configured (RAG_GENERATOR__URL)")
            self._client = OpenAI(
                base_url=self.base_url, api_key=self.config.api_key, timeout=self.config.timeout_s, max_retries=0
            )
        if not self._model:
            try:
                models = self._client.models.list()
                self._model = models.data[0].id if models.data else "default"
            except Exception as exc:
                raise GeneratorUnavailableError(f"generator at {self.base_url} is not answering: {_short(exc)}") from None
        return self

    @property
    def model(self) -> str:
        """The model name sent with each request."""
        return self._model

    def generate(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Generation:
        """One completion.

        Raises:
            GeneratorUnavailableError: the server is down, timed out or failed.
        """
        self.warm_up()
        try:
            resp = self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                temperature=self.config.temperature,
                seed=self.config.seed,
                max_tokens=max_tokens or self.config.max_tokens,
            )
        except Exception as exc:
            raise GeneratorUnavailableError(f"generator at {self.base_url} failed: {_short(exc)}") from None
        text = resp.choices[0].message.content or "" if resp.choices else ""
        usage = resp.usage
        return Generation(
            text=text.strip(),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model=self._model,
            finish_reason=str(resp.choices[0].finish_reason or "") if resp.choices else "",
        )

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Iterator[StreamDelta]:
        """A streamed completion: text deltas, then one final delta with ``done`` and usage.

        Raises:
            GeneratorUnavailableError: the server is down, timed out or failed.
        """
        self.warm_up()
        try:
            chunks = self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                temperature=self.config.temperature,
                seed=self.config.seed,
                max_tokens=max_tokens or self.config.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            prompt_tokens = completion_tokens = 0
            n = 0
            for chunk in chunks:
                if chunk.usage is not None:
                    prompt_tokens = int(chunk.usage.prompt_tokens or 0)
                    completion_tokens = int(chunk.usage.completion_tokens or 0)
                for choice in chunk.choices or []:
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        n += 1
                        yield StreamDelta(piece)
        except GeneratorUnavailableError:
            raise
        except Exception as exc:
            raise GeneratorUnavailableError(f"generator at {self.base_url} failed: {_short(exc)}") from None
        yield StreamDelta("", prompt_tokens, completion_tokens or n, done=True)

    def healthy(self) -> bool:
        """Whether the server answers its model list."""
        try:
            self.warm_up()
            self._client.models.list()
            return True
        except Exception:
            return False


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
