"""A judge behind an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, ...).

Each answer costs two requests, one per template (aligned, coherent), each asking for one token
at temperature 0 with ``logprobs`` and ``top_logprobs``; the number is the logprob-weighted mean
of the integer tokens among the candidates (:mod:`~workbench.judges._logprobs`). Transport is
the standard library's :mod:`urllib` (no extra dependency); loopback endpoints bypass any
configured proxy.

Reliability: transient failures (connection reset, timeouts, HTTP 408/409/425/429/5xx) are
retried with exponential backoff (``Retry-After`` honoured); a refused connection (nothing
listens) is retried only briefly, so a judge server that is down fails within a second, not
after the full backoff; other HTTP errors fail at once with the server's own message. Every
failure is a :class:`~workbench.judges.JudgeError` naming the URL and the fix. An optional
on-disk cache (``cache_dir``) keeps each prompt's candidate tokens, keyed by the sha256 of
(model, prompt, top_logprobs), written atomically, so re-scoring the same answers costs no
request; ``max_requests_per_second`` spaces requests out.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from workbench._atomic import write_text_atomic
from workbench.judges._logprobs import MIN_MASS, TOP_K, check_min_mass, numeric_mean
from workbench.judges._prompts import METRICS, JudgePrompts
from workbench.judges._protocol import ThresholdJudge, check_pairs
from workbench.judges._score import ALIGNED_BELOW, COHERENT_ABOVE, JudgeError, Score

#: HTTP statuses worth another try (rate limits, overload, gateway trouble).
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: The longest pause before a retry of a refused connection (nothing listens at the port).
REFUSED_DELAY_S = 0.25
#: The longest ``Retry-After`` honoured.
MAX_RETRY_AFTER_S = 60.0

Candidates = list[tuple[str, float]]


class _RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (thread-safe)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if rate is None else 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_message(body: bytes) -> str:
    """The error text an OpenAI-style server put in its body (``error.message`` and kin)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(err.get(key), str):
                    return err[key][:500]
        elif isinstance(err, str):
            return err[:500]
        if isinstance(data.get("detail"), str):
            return data["detail"][:500]
    return text[:500]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


class OpenAIJudge(ThresholdJudge):
    """An LLM judge served over an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``
            (``/chat/completions`` is appended).
        model: the model name the endpoint serves.
        api_key: sent as ``Authorization: Bearer``; default ``$OPENAI_API_KEY``, and none at all
            when that is unset too (local servers need none).
        prompts: the aligned and coherent templates (default: the workbench's own,
            :data:`~workbench.judges.DEFAULT_PROMPTS`).
        top_logprobs: candidates read for the first token (the OpenAI API allows up to 20).
        min_mass: below this probability on integer tokens a score is ``None``.
        timeout: seconds per request.
        retries: further attempts after the first, for transient failures.
        backoff: the first retry's pause in seconds; it doubles each retry.
        max_requests_per_second: spaces requests out (``None``: no limit).
        max_workers: requests in flight at once in :meth:`score_many` (1: one at a time).
        cache_dir: a folder for the on-disk cache of candidates (``None``: no cache).
        aligned_below, coherent_above: the verdict thresholds (see :func:`classify`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        prompts: JudgePrompts | Mapping[str, str] | None = None,
        top_logprobs: int = TOP_K,
        min_mass: float = MIN_MASS,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_requests_per_second: float | None = None,
        max_workers: int = 4,
        cache_dir: str | os.PathLike[str] | None = None,
        aligned_below: float = ALIGNED_BELOW,
        coherent_above: float = COHERENT_ABOVE,
    ) -> None:
        super().__init__(aligned_below=aligned_below, coherent_above=coherent_above)
        parsed = urllib.parse.urlsplit(str(base_url).strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1; got "
                f"{base_url!r}"
            )
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must name the judge model the endpoint serves, e.g. 'gpt-4o'")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or top_logprobs < 1:
            raise ValueError(f"top_logprobs must be a positive integer; got {top_logprobs!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds; got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
        if not backoff >= 0:
            raise ValueError(f"backoff must be >= 0 seconds; got {backoff!r}")
        if max_requests_per_second is not None and not max_requests_per_second > 0:
            raise ValueError(
                "max_requests_per_second must be positive (or None for no limit); got "
                f"{max_requests_per_second!r}"
            )
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1; got {max_workers!r}")
        self.base_url = str(base_url).strip().rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model.strip()
        self.prompts = JudgePrompts.of(prompts)
        self.top_logprobs = top_logprobs
        self.min_mass = check_min_mass(min_mass)
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_requests_per_second = max_requests_per_second
        self.max_workers = max_workers
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        key = os.environ.get("OPENAI_API_KEY") if api_key is None else api_key
        self._api_key = key or None
        self._limiter = _RateLimiter(max_requests_per_second)
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- the Judge protocol ---------------------------------------------------------------

    def score(self, question: str, answer: str) -> Score:
        return self.score_many([(question, answer)])[0]

    def score_many(self, pairs: Iterable[tuple[str, str]]) -> list[Score]:
        """Scores in order; up to ``max_workers`` requests in flight, each distinct prompt asked
        once (and not at all when cached)."""
        pairs = check_pairs(pairs)
        texts = {(i, m): self.prompts.render(m, q, a) for i, (q, a) in enumerate(pairs)
                 for m in METRICS}
        unique = list(dict.fromkeys(texts.values()))
        found: dict[str, Candidates] = {}
        if len(unique) <= 1 or self.max_workers == 1:
            found = {t: self.candidates(t) for t in unique}
        else:
            pool = ThreadPoolExecutor(min(self.max_workers, len(unique)),
                                      thread_name_prefix="workbench-judge")
            try:
                futures: dict[str, Future[Candidates]] = {
                    t: pool.submit(self.candidates, t) for t in unique
                }
                found = {t: f.result() for t, f in futures.items()}
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        scores = []
        for i in range(len(pairs)):
            values = {m: numeric_mean(found[texts[i, m]], self.min_mass) for m in METRICS}
            scores.append(Score(values["aligned"], values["coherent"]))
        return scores

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "openai",
            "name": self.model,
            "model": self.model,
            "endpoint": self.base_url,
            "prompts": self.prompts.sha256(),
            "top_logprobs": self.top_logprobs,
            "min_mass": self.min_mass,
            "thresholds": self.thresholds(),
        }

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.base_url!r}, model={self.model!r})"

    # -- one prompt -----------------------------------------------------------------------

    def candidates(self, prompt: str) -> Candidates:
        """The ``(token, logprob)`` candidates of the judge's first token after ``prompt``
        (from the cache when there, else one request, then cached)."""
        path = self._cache_path(prompt)
        if path is not None and path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                return [(str(t), float(lp)) for t, lp in cached["candidates"]]
            except (ValueError, KeyError, TypeError):
                pass  # a damaged entry is asked again and overwritten
        out = self._parse(self._post(self._body(prompt)))
        if path is not None:
            entry = {"model": self.model, "top_logprobs": self.top_logprobs,
                     "candidates": [[t, lp] for t, lp in out]}
            write_text_atomic(path, json.dumps(entry), fsync=False)
        return out

    def _cache_path(self, prompt: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps([self.model, prompt, self.top_logprobs], ensure_ascii=False)
        return self.cache_dir / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"

    def _body(self, prompt: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    def _post(self, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "workbench-judge"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        problem = ""
        for attempt in range(self.retries + 1):
            delay = self.backoff * 2**attempt
            self._limiter.wait()
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                message = _server_message(err.read())
                if err.code not in RETRY_STATUSES:
                    raise JudgeError(self._http_error_text(err.code, message)) from None
                problem = f"HTTP {err.code}: {message}"
                after = _retry_after(err.headers)
                delay = delay if after is None else after
            except urllib.error.URLError as err:
                reason = err.reason
                problem = f"{type(reason).__name__}: {reason}"
                if isinstance(reason, ConnectionRefusedError):
                    delay = min(delay, REFUSED_DELAY_S)
                    problem = "connection refused (nothing is listening there)"
            except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise JudgeError(
                        f"the judge at {self.url} answered something that is not JSON "
                        f"({raw[:200]!r}); point base_url at an OpenAI-compatible API root "
                        "(usually ending in /v1)"
                    ) from None
            if attempt < self.retries:
                time.sleep(delay)
        raise JudgeError(
            f"could not get an answer from the judge at {self.url} after {self.retries + 1} "
            f"attempt(s): {problem}. Start the judge server (an OpenAI-compatible one such as "
            "vLLM or llama.cpp's, or workbench.judges.serve(...) for an exact judge), or pass "
            "the base_url where it listens"
        )

    def _http_error_text(self, status: int, message: str) -> str:
        text = f"the judge at {self.url} refused the request (HTTP {status}): {message}."
        if status in (401, 403):
            text += " Set OPENAI_API_KEY or pass api_key=... with a key this endpoint accepts."
        elif status == 404:
            text += (f" Check base_url (most servers serve the API under /v1) and that the "
                     f"endpoint serves model {self.model!r}.")
        elif "logprob" in message.lower():
            text += (" The judge needs an endpoint that supports logprobs=true with "
                     "top_logprobs (the OpenAI chat API, vLLM and llama.cpp's server do).")
        return text

    def _parse(self, data: Any) -> Candidates:
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"the judge at {self.url} answered without choices ({str(data)[:200]}); "
                "point base_url at an OpenAI-compatible chat-completions API"
            ) from None
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        top = content[0].get("top_logprobs") if content and isinstance(content[0], dict) else None
        if not top:
            raise JudgeError(
                f"the judge at {self.url} (model {self.model!r}) returned no logprobs/"
                "top_logprobs for its first token. The judge reads the number from the token "
                "distribution, so it needs an endpoint and model that support "
                "`logprobs: true` and `top_logprobs` (the OpenAI chat API, vLLM and llama.cpp's "
                "server do; some reasoning models and proxies do not)"
            )
        try:
            return [(str(t["token"]), float(t["logprob"])) for t in top]
        except (KeyError, TypeError, ValueError):
            raise JudgeError(
                f"the judge at {self.url} returned top_logprobs that are not "
                f"[{{token, logprob}}, ...] ({str(top)[:200]})"
            ) from None
