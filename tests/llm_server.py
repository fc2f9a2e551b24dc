"""A scripted OpenAI-compatible chat-completions server on loopback, for tests.

`ScriptedLLM` is a real HTTP server (stdlib, one thread per connection) that speaks the
OpenAI wire format well enough for the official `openai` SDK: `POST /v1/chat/completions`
(with `tools` / `tool_choice`, and `stream: true`) and `GET /v1/models`. Each completion is
decided by a policy, `policy(request_json) -> Reply`, or by a fixed list of replies played in
order. A `Reply` is a tool call, several tool calls, plain text, a raw (malformed) tool call,
an HTTP error (optionally with `Retry-After`), any of those after a delay, or a dropped
connection. Every request is recorded (`server.requests`, `server.exchanges`) for assertions.

Token usage is deterministic so tests can assert exact accounting:
`prompt_tokens(request)` is the length of all the request's message text // 4 and
`completion_tokens(reply)` is fixed per reply (see both functions).

The observation helpers (`observation_text`, `observation_elements`, `elements`,
`find_element`, `step_index`) read the agent's prompt: the newest user (or tool) message
carries the page, its interactive elements one per line as `[N] <tag attrs> text`.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JSON = dict[str, Any]

DEFAULT_MODEL = "scripted-llm"
CREATED = 1_700_000_000  # fixed `created` timestamps keep responses deterministic
ROLES = ("system", "developer", "user", "assistant", "tool")


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolCall:
    """One function call in an assistant message.

    `arguments` as a mapping is sent as JSON; as a string it is sent verbatim, so a test can
    hand the client arguments that are not JSON at all.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


@dataclass(frozen=True)
class Reply:
    """What the server answers to one chat-completions request.

    Build one with the class methods; `delayed(seconds)` wraps any reply in a pause first.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None  # default: "tool_calls" when there are calls, else "stop"
    completion_tokens: int | None = None  # default: see `completion_tokens()`
    status: int = 200
    body: Any = None  # an error's body: JSON-able, or a str sent as text/plain
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def call(
        cls, name: str, args: Mapping[str, Any] | None = None, thought: str | None = None
    ) -> Reply:
        """One tool call, with `thought` as the message text."""
        return cls(content=thought, tool_calls=(ToolCall(name, dict(args or {})),))

    @classmethod
    def calls(
        cls,
        calls: Iterable[ToolCall | tuple[str, Mapping[str, Any]]],
        thought: str | None = None,
    ) -> Reply:
        """Several tool calls in one assistant message."""
        made = tuple(c if isinstance(c, ToolCall) else ToolCall(c[0], dict(c[1])) for c in calls)
        return cls(content=thought, tool_calls=made)

    @classmethod
    def text(cls, content: str) -> Reply:
        """A plain answer with no tool call."""
        return cls(content=content)

    @classmethod
    def malformed(cls, name: str, raw_arguments: str, thought: str | None = None) -> Reply:
        """A tool call whose `arguments` string is sent exactly as given (e.g. not JSON)."""
        return cls(content=thought, tool_calls=(ToolCall(name, raw_arguments),))

    @classmethod
    def error(
        cls,
        status: int,
        body: Any = None,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error; the default body is OpenAI's `{"error": {...}}` shape."""
        if body is None:
            body = error_body(f"scripted error {status}", _error_type(status))
        sent = dict(headers or {})
        if retry_after is not None:
            sent["Retry-After"] = _format_seconds(retry_after)
        return cls(status=status, body=body, headers=sent)

    @classmethod
    def disconnect(cls) -> Reply:
        """Close the connection without answering."""
        return cls(drop=True)

    def delayed(self, seconds: float) -> Reply:
        """The same reply, sent after `seconds`."""
        return replace(self, delay=seconds)

    @property
    def is_error(self) -> bool:
        return self.status >= 400


Policy = Callable[[JSON], Reply]


def error_body(
    message: str, type_: str = "invalid_request_error", param: str | None = None
) -> JSON:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _format_seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def always(reply: Reply) -> Policy:
    """A policy giving the same reply every time (a model stuck in a loop, say)."""
    return lambda request: reply


def script(replies: Sequence[Reply]) -> Policy:
    """A policy that plays `replies` in order; past the end it raises (the server answers 500)."""
    lock = threading.Lock()
    remaining = list(replies)

    def policy(request: JSON) -> Reply:
        with lock:
            if not remaining:
                raise LookupError(f"the script of {len(replies)} replies is used up")
            return remaining.pop(0)

    return policy


# --------------------------------------------------------------------------- accounting


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: its string content, or its text parts joined by newlines."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")
        ]
        return "\n".join(parts)
    return ""


def prompt_tokens(request: Mapping[str, Any]) -> int:
    """len(all message text) // 4, where a message's text is its content (text parts joined by
    newlines) followed by the name and arguments of each of its tool calls; messages are
    concatenated with no separator."""
    total = 0
    for message in request.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        total += len(message_text(message))
        for call in message.get("tool_calls") or []:
            function = (call.get("function") if isinstance(call, Mapping) else None) or {}
            total += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return total // 4


def completion_tokens(reply: Reply) -> int:
    """`reply.completion_tokens` if set, else 10 + len(content) // 4 + 20 per tool call."""
    if reply.completion_tokens is not None:
        return reply.completion_tokens
    return 10 + len(reply.content or "") // 4 + 20 * len(reply.tool_calls)


def usage(request: Mapping[str, Any], reply: Reply) -> JSON:
    prompt = prompt_tokens(request)
    completion = completion_tokens(reply)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --------------------------------------------------------------------------- validation


def validate_request(body: Any) -> str | None:
    """What OpenAI would refuse with a 400 (the checks an agent can get wrong), else None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: a non-empty string is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: a non-empty array is required"
    tool_names: set[str] = set()
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: must be an array"
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict):
                return f"tools[{i}]: expected {{type: function, function: {{...}}}}"
            name = function.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                return f"tools[{i}].function.name: invalid"
            parameters = function.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                return f"tools[{i}].function.parameters: must be an object"
            tool_names.add(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                return "tool_choice: must be none, auto, required or a named function"
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if choice.get("type") != "function" or name not in tool_names:
                return "tool_choice: names a function that is not in tools"
        else:
            return "tool_choice: invalid"
        if not tool_names and choice != "none":
            return "tool_choice: is only allowed when tools are specified"
    pending: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}].role: must be one of {', '.join(ROLES)}"
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return (
                    f"messages[{i}]: a 'tool' message must answer a tool_call_id of the "
                    "preceding assistant message"
                )
            pending.remove(call_id)
            continue
        if pending:
            return (
                f"messages[{i}]: an assistant message with 'tool_calls' must be followed by "
                f"tool messages responding to each 'tool_call_id' (missing: {', '.join(pending)})"
            )
        if role == "assistant":
            for j, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(call.get("id"), str)
                    or call.get("type") != "function"
                    or not isinstance(function, dict)
                    or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments"), str)
                ):
                    return f"messages[{i}].tool_calls[{j}]: expected {{id, type, function}}"
                pending.append(call["id"])
        elif message.get("content") is None:
            return f"messages[{i}].content: required for role {role}"
    if pending:
        return "the last assistant message's tool_calls have no tool messages answering them"
    return None


# --------------------------------------------------------------------------- responses


def completion_json(request: Mapping[str, Any], reply: Reply, number: int, model: str) -> JSON:
    message: JSON = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            _tool_call_json(call, number, i) for i, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": CREATED + number,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(reply),
                "logprobs": None,
            }
        ],
        "usage": usage(request, reply),
        "system_fingerprint": "scripted",
    }


def _tool_call_json(call: ToolCall, number: int, index: int) -> JSON:
    return {
        "id": call.id or f"call_{number}_{index}",
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json()},
    }


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def stream_chunks(request: Mapping[str, Any], reply: Reply, number: int, model: str) -> list[JSON]:
    """The reply as `chat.completion.chunk`s: the whole delta, the finish, then usage if asked."""
    head: JSON = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk"}
    head |= {"created": CREATED + number, "model": model}
    delta: JSON = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        delta["tool_calls"] = [
            {"index": i, **_tool_call_json(call, number, i)}
            for i, call in enumerate(reply.tool_calls)
        ]
    chunks: list[JSON] = [
        head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        head | {"choices": [{"index": 0, "delta": {}, "finish_reason": _finish_reason(reply)}]},
    ]
    options = request.get("stream_options") or {}
    if isinstance(options, Mapping) and options.get("include_usage"):
        chunks.append(head | {"choices": [], "usage": usage(request, reply)})
    return chunks


# --------------------------------------------------------------------------- server


@dataclass
class Exchange:
    """One chat-completions request and what was answered (`response` None: no JSON body)."""

    request: JSON
    headers: dict[str, str]
    reply: Reply | None = None
    status: int | None = None
    response: Any = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": owner.model, "object": "model", "created": CREATED}
            self._send_json(200, {"object": "list", "data": [model | {"owned_by": "tests"}]})
        elif self.path.startswith("/v1/models/"):
            name = self.path.removeprefix("/v1/models/")
            if name == owner.model:
                self._send_json(200, {"id": name, "object": "model", "created": CREATED})
            else:
                self._send_json(404, error_body(f"model {name} not found", param="model"))
        else:
            self._send_json(404, error_body(f"no route GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, error_body(f"no route POST {self.path}"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, error_body("the body is not valid JSON"))
            return
        if not isinstance(body, dict):
            self._send_json(400, error_body("the body must be a JSON object"))
            return
        owner = self.server.owner
        exchange = owner._record(body, dict(self.headers.items()))
        if owner.strict and (problem := validate_request(body)):
            self._answer_error(exchange, 400, error_body(problem))
            return
        model = str(body.get("model") or owner.model)
        try:
            reply = owner.policy(json.loads(raw))  # a copy: the record stays as received
            if not isinstance(reply, Reply):
                raise TypeError(f"the policy returned {reply!r}, not a Reply")
            payload = None
            if not (reply.drop or reply.is_error or body.get("stream")):
                payload = completion_json(body, reply, exchange_number(owner, exchange), model)
                json.dumps(payload)  # arguments the policy gave must be JSON-able
        except Exception as exc:  # the test's policy is broken: say so loudly
            owner.errors.append(f"{type(exc).__name__}: {exc}")
            self._answer_error(exchange, 500, error_body(f"policy failed: {exc}", "server_error"))
            return
        exchange.reply = reply
        if reply.delay and owner._stopping.wait(reply.delay):
            self._drop()
            return
        if reply.drop:
            self._drop()
        elif reply.is_error:
            self._answer_error(exchange, reply.status, reply.body, reply.headers)
        elif payload is None:
            self._stream(exchange, body, reply, model)
        else:
            exchange.status, exchange.response = 200, payload
            self._send_json(200, payload, reply.headers)

    def _answer_error(
        self, exchange: Exchange, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        exchange.status, exchange.response = status, body
        if isinstance(body, str | bytes):
            data = body.encode() if isinstance(body, str) else body
            self._send(status, data, "text/plain; charset=utf-8", headers)
        else:
            self._send_json(status, body, headers)

    def _stream(self, exchange: Exchange, body: JSON, reply: Reply, model: str) -> None:
        owner = self.server.owner
        chunks = stream_chunks(body, reply, exchange_number(owner, exchange), model)
        exchange.status, exchange.response = 200, chunks
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:
            pass

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{len(self.server.owner.exchanges)}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def exchange_number(owner: ScriptedLLM, exchange: Exchange) -> int:
    """1-based position of the exchange; it names the completion (`chatcmpl-N`, `call_N_i`)."""
    with owner._lock:
        return owner.exchanges.index(exchange) + 1


class ScriptedLLM:
    """An OpenAI-compatible server on 127.0.0.1 (a free port), answering from a policy.

    Use as a context manager (or `start()` / `stop()`):

        with ScriptedLLM(lambda request: Reply.call("complete", {...})) as llm:
            client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test")

    `policy` may also be a list of replies, played in order. The policy can be called from
    several threads at once (one per connection). `strict` (default) refuses, with a 400 as
    OpenAI does, requests whose messages or tools are malformed (see `validate_request`).
    """

    def __init__(
        self,
        policy: Policy | Sequence[Reply],
        *,
        model: str = DEFAULT_MODEL,
        strict: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.policy: Policy = script(policy) if isinstance(policy, Sequence) else policy
        self.model = model
        self.strict = strict
        self.exchanges: list[Exchange] = []
        self.errors: list[str] = []  # exceptions the policy raised
        self._host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self._host, 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._idle.wait_for(lambda: not self._connections, timeout=5)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's `base_url` (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # records

    @property
    def requests(self) -> list[JSON]:
        """Every chat-completions request body received, in order."""
        with self._lock:
            return [exchange.request for exchange in self.exchanges]

    @property
    def responses(self) -> list[Any]:
        with self._lock:
            return [exchange.response for exchange in self.exchanges]

    def usage_totals(self) -> JSON:
        """Summed `usage` over the completions answered 200 (what a client should count)."""
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "calls": 0}
        with self._lock:
            answered = [e for e in self.exchanges if e.status == 200 and e.reply is not None]
        for exchange in answered:
            assert exchange.reply is not None
            for key, value in usage(exchange.request, exchange.reply).items():
                totals[key] += value
            totals["calls"] += 1
        return totals

    # used by the handler

    def _record(self, body: JSON, headers: Mapping[str, str]) -> Exchange:
        exchange = Exchange(request=body, headers={k.lower(): v for k, v in headers.items()})
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._idle.notify_all()


# --------------------------------------------------------------------------- observations

_ELEMENT_LINE = re.compile(r"^\s*\[(\d+)\]\s?(.*?)\s*$")


@dataclass(frozen=True)
class Element:
    """One `[N] <tag attrs> text` line of an observation, parsed."""

    n: int
    tag: str
    attrs: dict[str, str]
    text: str
    line: str

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)


def observation_message(request: Mapping[str, Any]) -> JSON | None:
    """The newest user or tool message: the one carrying the current observation."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return message
    return None


def observation_text(request: Mapping[str, Any]) -> str:
    message = observation_message(request)
    return message_text(message) if message else ""


def texts_newest_first(request: Mapping[str, Any]) -> Iterator[str]:
    """Every message's text, newest first (where to look for an instruction)."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict):
            yield message_text(message)


def element_lines(text: str) -> list[tuple[int, str]]:
    """The `[N] ...` lines of a text, as (N, the whole line stripped)."""
    found = []
    for line in text.splitlines():
        match = _ELEMENT_LINE.match(line)
        if match:
            found.append((int(match.group(1)), line.strip()))
    return found


def observation_elements(request: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The newest user/tool message's element lines, as (N, line)."""
    return element_lines(observation_text(request))


def elements(request: Mapping[str, Any]) -> list[Element]:
    """The newest user/tool message's element lines, parsed."""
    return [parse_element(n, line) for n, line in observation_elements(request)]


def parse_element(n: int, line: str) -> Element:
    """Parse `[N] <tag a=b c="d e" flag> text` (a closing `</tag>` after the text is dropped)."""
    match = _ELEMENT_LINE.match(line)
    rest = match.group(2) if match else line.strip()
    if not rest.startswith("<"):
        return Element(n, "", {}, _squash(rest), line)
    i, size = 1, len(rest)
    start = i
    while i < size and not rest[i].isspace() and rest[i] not in ">/":
        i += 1
    tag = rest[start:i].lower()
    attrs: dict[str, str] = {}
    while i < size:
        while i < size and rest[i].isspace():
            i += 1
        if i >= size:
            break
        if rest[i] == ">":
            i += 1
            break
        if rest.startswith("/>", i):
            i += 2
            break
        start = i
        while i < size and not rest[i].isspace() and rest[i] not in "=>":
            i += 1
        name = rest[start:i].lower()
        if i == start:  # a stray character: skip it
            i += 1
            continue
        value = ""
        if i < size and rest[i] == "=":
            i += 1
            if i < size and rest[i] in "\"'":
                quote, i = rest[i], i + 1
                chars: list[str] = []
                while i < size and rest[i] != quote:
                    if rest[i] == "\\" and i + 1 < size:
                        i += 1
                    chars.append(rest[i])
                    i += 1
                value, i = "".join(chars), i + 1
            else:
                start = i
                while i < size and not rest[i].isspace() and rest[i] != ">":
                    i += 1
                value = rest[start:i]
        attrs[name] = value
    text = rest[i:].strip()
    if tag and text.lower().endswith(f"</{tag}>"):
        text = text[: -len(tag) - 3]
    return Element(n, tag, attrs, _squash(text), line)


def _squash(text: str) -> str:
    return " ".join(text.split())


def find_elements(
    found: Iterable[Element],
    *,
    tag: str | Iterable[str] | None = None,
    text: str | None = None,
    exact: bool = True,
    **attrs: str,
) -> list[Element]:
    """The elements matching all the given criteria; text compares whitespace-squashed, exact
    (case-sensitive) first: with `exact=False` a case-insensitive match is taken when no exact
    one exists. Attribute names use `_` for `-` (`aria_label="Close"`)."""
    tags = {tag} if isinstance(tag, str) else set(tag) if tag is not None else None
    wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
    candidates = [
        element
        for element in found
        if (tags is None or element.tag in tags)
        and all(element.attrs.get(name) == value for name, value in wanted.items())
    ]
    if text is None:
        return candidates
    target = _squash(text)
    hits = [element for element in candidates if element.text == target]
    if hits or exact:
        return hits
    return [element for element in candidates if element.text.casefold() == target.casefold()]


def find_element(
    found: Iterable[Element],
    *,
    tag: str | Iterable[str] | None = None,
    text: str | None = None,
    exact: bool = True,
    **attrs: str,
) -> Element | None:
    """The first element `find_elements` returns, or None."""
    hits = find_elements(found, tag=tag, text=text, exact=exact, **attrs)
    return hits[0] if hits else None


def previous_tool_calls(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments string) of every tool call the assistant already made, in order."""
    calls = []
    for message in request.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                calls.append((str(function.get("name", "")), str(function.get("arguments", ""))))
    return calls


def step_index(request: Mapping[str, Any]) -> int:
    """How many tool calls the assistant made before this request (the step being decided)."""
    return len(previous_tool_calls(request))
