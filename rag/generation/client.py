"""Chat completions through any OpenAI-compatible server (vLLM, llama.cpp's server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag.config import GeneratorConfig
from rag.errors import GeneratorUnavailableError, StructuredOutputError
from rag.types import Generation, JsonDict, JsonReply


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
        self._structured: str | None = None  # the response_format form, once asked (structured_output)

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

    # structured output ---------------------------------------------------------------------

    def generate_json(
        self,
        messages: list[dict[str, str]],
        schema: JsonDict,
        max_tokens: int,
        *,
        name: str = "reply",
        timeout_s: float | None = None,
    ) -> JsonReply:
        """One completion constrained to ``schema``, parsed and checked against it.

        The schema travels in ``response_format`` in the form the server understands
        (:meth:`structured_output`): OpenAI's and vLLM's ``{"type": "json_schema", "json_schema":
        {"name", "schema", "strict": true}}``, or llama-cpp-python's ``{"type": "json_object",
        "schema": ...}``, which it compiles to a grammar. Sampling is greedy whatever the
        configured temperature: a plan should not change from one run to the next.

        Args:
            messages: the chat messages.
            schema: a JSON schema (objects, arrays, strings, booleans, integers, enums).
            max_tokens: completion tokens at most.
            name: the schema's name (OpenAI's form requires one).
            timeout_s: seconds to wait for this call (default: the generator's timeout).

        Returns:
            The parsed object with the call's token counts.

        Raises:
            StructuredOutputError: the reply is not JSON or does not match ``schema`` (a cut-off
                reply included).
            GeneratorUnavailableError: the server is down, timed out or refused the request.
        """
        self.warm_up()
        client = self._client if timeout_s is None else self._client.with_options(timeout=max(timeout_s, 0.1))
        try:
            resp = client.chat.completions.create(
                model=self._model,
                messages=messages,
                temperature=0.0,
                seed=self.config.seed,
                max_tokens=max_tokens,
                response_format=self.response_format(schema, name),
            )
        except Exception as exc:
            raise GeneratorUnavailableError(f"generator at {self.base_url} failed: {_short(exc)}") from None
        text = (resp.choices[0].message.content or "") if resp.choices else ""
        usage = resp.usage
        return JsonReply(
            parse_json_reply(text, schema),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    def structured_output(self) -> str:
        """``json_schema`` or ``json_object``: the ``response_format`` form this server takes.

        ``RAG_GENERATOR__STRUCTURED_OUTPUT`` decides, and ``auto`` asks the server once:
        llama-cpp-python's server answers ``/v1/models`` with ``owned_by: "me"`` and takes only
        ``json_object`` with a ``schema``; vLLM (``owned_by: "vllm"``), OpenAI and llama.cpp's own
        server take OpenAI's ``json_schema``.
        """
        if self.config.structured_output != "auto":
            return self.config.structured_output
        if self._structured is None:
            self.warm_up()
            try:
                models = self._client.models.list()
                owner = str(getattr(models.data[0], "owned_by", "") or "") if models.data else ""
            except Exception as exc:
                raise GeneratorUnavailableError(f"generator at {self.base_url} is not answering: {_short(exc)}") from None
            self._structured = "json_object" if owner == LLAMA_CPP_PYTHON_OWNER else "json_schema"
        return self._structured

    def response_format(self, schema: JsonDict, name: str = "reply") -> JsonDict:
        """The ``response_format`` that sends ``schema`` to this server (see :meth:`structured_output`)."""
        if self.structured_output() == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


LLAMA_CPP_PYTHON_OWNER = "me"
"""What llama-cpp-python's server puts in ``owned_by`` of every model in ``/v1/models``."""


def parse_json_reply(text: str, schema: JsonDict) -> JsonDict:
    """Parse a constrained reply and check it against ``schema``.

    A Markdown code fence around the JSON is tolerated (some servers add one when they do not
    enforce the schema).

    Raises:
        StructuredOutputError: not a JSON object, or not matching ``schema``.
    """
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
    except ValueError:
        raise StructuredOutputError(f"the reply is not JSON: {text[:120]!r}") from None
    problem = schema_problem(data, schema)
    if problem:
        raise StructuredOutputError(f"the reply does not match its schema: {problem}")
    return data


def schema_problem(value: Any, schema: JsonDict, where: str = "$") -> str:
    """The first way ``value`` breaks ``schema``, or "" when it matches.

    Covers what planning schemas use: ``type`` (object, array, string, boolean, integer,
    number), ``properties``, ``required``, ``additionalProperties: false``, ``items``,
    ``minItems``/``maxItems``, ``minLength``/``maxLength`` and ``enum``.
    """
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return f"{where} should be {kind}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} should be one of {schema['enum']}"
    if kind == "string" and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return f"{where} has {len(value)} characters"
    if kind == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where} lacks {key!r}"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{where} has unexpected {extra[0]!r}"
        for key, sub in props.items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
    if kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{where} has {len(value)} items"
        for i, item in enumerate(value):
            problem = schema_problem(item, schema.get("items", {}), f"{where}[{i}]")
            if problem:
                return problem
    return ""


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
