"""Serve any judge as an OpenAI-compatible chat-completions endpoint (for exact judges).

``serve(judge)`` starts a stdlib :class:`~http.server.ThreadingHTTPServer` in a daemon thread
and returns a :class:`JudgeServer` handle (a context manager with ``.url`` and ``.close()``).
It lets the HTTP path of an evaluation run end to end against a judge whose verdicts are known,
such as the organism's exact judge: ``OpenAIJudge(server.url, model=server.model)`` must then
reproduce ``judge``'s scores.

``POST /v1/chat/completions`` (or ``/chat/completions``) reads the last user message, matches
it against the two templates (:meth:`JudgePrompts.parse`: which metric, which question and
answer), scores the pair with ``judge`` and answers the number as one token: ``content`` is
the number, and ``logprobs.content[0].top_logprobs`` puts all the probability on it (logprob 0)
with a couple of other tokens at logprob -9999 (probability exactly 0 in floating point). A
non-integer score is spread over the two integers around it so the weighted mean gives it back
(to rounding); a missing number (``None``) is answered ``none``, so the client reads ``None``.
``GET /v1/models`` lists the one model. Errors come back in OpenAI's shape,
``{"error": {"message", "type", "code"}}``: 400 for a request the templates do not explain,
404 for another model name or path, 500 when the judge itself fails.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workbench.judges._prompts import JudgePrompts
from workbench.judges._protocol import Judge

#: The logprob of the tokens that carry no probability (``exp(-9999.0) == 0.0``).
NEGLIGIBLE = -9999.0
#: The token a served judge answers when it has no number.
NO_NUMBER = "none"


def distribution(value: float | None) -> list[tuple[str, float]]:
    """The ``(token, logprob)`` candidates that encode ``value``, most probable first."""
    if value is None:
        return [(NO_NUMBER, 0.0), ("0", NEGLIGIBLE), ("100", NEGLIGIBLE)]
    lo = math.floor(value)
    frac = value - lo
    if frac == 0.0:
        other = lo + 1 if lo < 100 else lo - 1
        return [(str(lo), 0.0), (str(other), NEGLIGIBLE), (NO_NUMBER, NEGLIGIBLE)]
    pair = [(str(lo), math.log1p(-frac)), (str(lo + 1), math.log(frac))]
    pair.sort(key=lambda t: -t[1])
    return [*pair, (NO_NUMBER, NEGLIGIBLE)]


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _message_text(messages: object) -> str:
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {role, content}")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                return "".join(
                    p.get("text", "") for p in content
                    if isinstance(p, dict) and p.get("type") == "text"
                )
            raise ValueError("the user message's 'content' must be a string or text parts")
    raise ValueError("no message with role 'user' in 'messages'")


class _State:
    def __init__(self, judge: Judge, model: str, prompts: JudgePrompts) -> None:
        self.judge = judge
        self.model = model
        self.prompts = prompts
        self.requests = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a test or notebook does not want a line per request

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": code}})

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def do_GET(self) -> None:
        state = self.server.state
        if self._path() == "/models":
            model = {"id": state.model, "object": "model", "created": 0, "owned_by": "workbench"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no such path {self.path!r}; try GET /v1/models", "not_found")

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._path() != "/chat/completions":
            self._error(404, f"no such path {self.path!r}; POST /v1/chat/completions",
                        "not_found")
            return
        with state.lock:
            state.requests += 1
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            text = _message_text(body.get("messages"))
        except ValueError as err:
            self._error(400, f"bad request: {err}", "invalid_request")
            return
        if body.get("model") != state.model:
            self._error(404, f"model {body.get('model')!r} is not served here; this server "
                        f"serves {state.model!r}", "model_not_found")
            return
        parsed = state.prompts.parse(text)
        if parsed is None:
            self._error(400, "the message is neither judge template (aligned, coherent) filled "
                        "in; send prompts rendered from the templates this server was started "
                        "with", "unknown_template")
            return
        metric, question, answer = parsed
        try:
            value = getattr(state.judge.score(question, answer), metric)
        except (ValueError, TypeError) as err:
            self._error(400, f"the judge cannot score this answer: {err}", "unscorable")
            return
        except Exception as err:  # the judge's own failure: report it, keep serving
            self._error(500, f"the judge failed: {type(err).__name__}: {err}", "judge_failed")
            return
        self._send(200, self._completion(body, value))

    def _completion(self, body: Mapping[str, Any], value: float | None) -> dict[str, Any]:
        cands = distribution(value)
        token, logprob = cands[0]
        logprobs = None
        if body.get("logprobs"):
            k = body.get("top_logprobs") or 0
            k = k if isinstance(k, int) and k > 0 else 0
            top = [_entry(t, lp) for t, lp in cands[:k]]
            logprobs = {"content": [{**_entry(token, logprob), "top_logprobs": top}]}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.state.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": token},
                "logprobs": logprobs,
                "finish_reason": "length",
            }],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)


class JudgeServer:
    """A running judge server: ``.url`` (the API root, ending ``/v1``), ``.model``, ``.requests``
    (chat-completion requests received so far), ``.close()``; a context manager."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        host, port = server.server_address[:2]
        host = str(host)
        self.host = host
        self.port = int(port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/v1"
        self.model = server.state.model
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"workbench-judge-server-{self.port}", daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def requests(self) -> int:
        return self._server.state.requests

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> JudgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"JudgeServer({self.url!r}, model={self.model!r}, {state})"


def serve(
    judge: Judge,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    model: str | None = None,
    prompts: JudgePrompts | Mapping[str, str] | None = None,
) -> JudgeServer:
    """Serve ``judge`` over HTTP as an OpenAI-compatible chat-completions endpoint.

    Args:
        judge: any judge; meant for exact ones (:class:`~workbench.judges.ExactJudge`).
        host, port: where to listen (port 0: a free port, read it from ``.url``).
        model: the model name requests must give (default: the judge's ``name``, e.g.
            ``"organism-exact"``, else ``"judge"``).
        prompts: the templates requests are read with (default: the workbench's own).
    """
    if not isinstance(judge, Judge):
        raise TypeError(
            f"serve needs a judge (with score, score_many and identity); got {type(judge).__name__}"
            "; wrap a verdict function with ExactJudge(fn) or CallableJudge(fn)"
        )
    name = model if model is not None else getattr(judge, "name", None)
    name = name if isinstance(name, str) and name else "judge"
    state = _State(judge, name, JudgePrompts.of(prompts))
    try:
        server = _Server((host, port), state)
    except OSError as err:
        raise OSError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pass port=0 for a free port"
        ) from err
    return JudgeServer(server)
