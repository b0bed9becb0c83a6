"""The Hugging Face hub as the loaders see it: reachable or not, what is cached, and the fix.

Two loaders read from the hub: TransformerLens model names (``subjects``) and SAE Lens releases
(``dictionaries``). Before either lets ``huggingface_hub`` near the network it asks the same
questions here: did the user ask for cache-only access (``HF_HUB_OFFLINE``), does the hub answer
within a few seconds (:func:`probe_hub`), and where is the local cache (:func:`hf_hub_cache`).
With no hub and the files not cached they fail at once, instead of after ``huggingface_hub``'s
half-minute of retries, with :func:`offline_error_text`: the one message that names the fix
(pre-download on a machine with internet, point ``HF_HOME`` at the copied cache, set
``HF_HUB_OFFLINE=1``).

Everything is read from the environment at call time, not at import, so a change to ``HF_HOME``
or ``HF_ENDPOINT`` after ``import workbench`` is honoured.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

DEFAULT_ENDPOINT = "https://huggingface.co"

#: Seconds the hub gets to answer the reachability probe before it is called unreachable.
PROBE_TIMEOUT_S = 3.0


def env_true(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (1, on, yes, true)."""
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_requested() -> bool:
    """Whether the user asked for cache-only Hugging Face access (``HF_HUB_OFFLINE`` or
    ``TRANSFORMERS_OFFLINE``), read now rather than at import."""
    return env_true("HF_HUB_OFFLINE") or env_true("TRANSFORMERS_OFFLINE")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is now.

    ``HF_HUB_CACHE`` (or the legacy ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``), as ``huggingface_hub``
    resolves it at import. Read at call time, so a change to ``HF_HOME`` after import is honoured
    (the loaders pass it on as ``cache_dir``, or through :func:`hub_settings`).
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_endpoint() -> str:
    """The hub's base URL: ``HF_ENDPOINT`` if set, else ``https://huggingface.co``."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``endpoint`` answers an HTTP HEAD within ``timeout`` seconds (any status counts).

    Runs in a daemon thread so a slow DNS resolver cannot stretch the wait past ``timeout``.
    Honours the usual proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) through :mod:`urllib`.
    """
    result: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(endpoint, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            result.append(True)
        except urllib.error.HTTPError:
            result.append(True)  # the server answered, with an error status: reachable
        except (OSError, ValueError):
            result.append(False)

    thread = threading.Thread(target=probe, name="workbench-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@dataclass(frozen=True)
class HubAccess:
    """What :func:`probe_hub` found: whether the loaders may use the network, and why not.

    Attributes:
        endpoint: the hub URL that was (or would have been) probed.
        requested_offline: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set (no probe made).
        reachable: the hub answered the probe.
        timeout: the probe's timeout in seconds.
    """

    endpoint: str
    requested_offline: bool
    reachable: bool
    timeout: float = PROBE_TIMEOUT_S

    @property
    def offline(self) -> bool:
        """Read only the local cache (``local_files_only``)."""
        return self.requested_offline or not self.reachable

    @property
    def reason(self) -> str:
        """Why the hub is not used, as the end of a sentence (empty when it is used)."""
        if self.requested_offline:
            return "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the hub is not asked"
        if not self.reachable:
            return f"the hub ({self.endpoint}) is unreachable (probe timeout {self.timeout:g} s)"
        return ""


def probe_hub(timeout: float = PROBE_TIMEOUT_S) -> HubAccess:
    """Check once whether the hub may be used: not under ``HF_HUB_OFFLINE``, else a short probe."""
    endpoint = hub_endpoint()
    requested = offline_requested()
    reachable = False if requested else hub_reachable(endpoint, timeout)
    return HubAccess(endpoint, requested, reachable, timeout)


def is_cached(repo_id: str, filename: str, cache_dir: Path) -> bool:
    """Whether ``filename`` of the model repo ``repo_id`` is in the hub cache ``cache_dir``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    return isinstance(found, str)


@contextlib.contextmanager
def hub_settings(cache_dir: Path, cache_only: bool) -> Iterator[None]:
    """Make ``huggingface_hub`` use ``cache_dir`` (and only it, if ``cache_only``) while active.

    For libraries that call ``hf_hub_download`` without a ``cache_dir`` (SAE Lens): they then
    read the cache :func:`hf_hub_cache` names, and ``cache_only`` acts as ``HF_HUB_OFFLINE=1``.
    """
    from huggingface_hub import constants

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(constants, "HF_HUB_CACHE", str(cache_dir)))
        if cache_only:
            stack.enter_context(mock.patch.object(constants, "HF_HUB_OFFLINE", True))
        yield


def offline_error_text(
    what: str,
    access: HubAccess,
    cache_dir: Path,
    *,
    repo_id: str,
    first_load: str,
    instead: str,
    missing: Sequence[str] = (),
    error: BaseException | None = None,
    include: str | None = None,
) -> str:
    """The message for "cannot load ``what`` without the hub", naming the fix.

    Args:
        what: the thing that failed to load, e.g. ``"TransformerLens model 'gpt2' (Hugging Face
            repo 'openai-community/gpt2')"``.
        access: the result of :func:`probe_hub` (says why the hub was not used).
        cache_dir: the hub cache that was read.
        repo_id: the Hugging Face repo to pre-download.
        first_load: the library call that downloads it too, e.g. ``"SAE.from_pretrained(...)"``.
        instead: a closing sentence on what loads without any download.
        missing: the files known to be absent from the cache.
        error: the exception the cache-only read raised, if it was tried.
        include: a ``--include`` pattern for the download command (a folder of the repo).
    """
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        problem = (
            f"{' and '.join(missing)} {verb} not in the local Hugging Face cache ({cache_dir})"
        )
    else:
        problem = f"reading it from the local Hugging Face cache ({cache_dir}) failed"
    if error is not None:
        problem += f" ({type(error).__name__}: {error})"
    download = repo_id if include is None else f"{repo_id} --include '{include}'"
    return (
        f"cannot load {what}: {problem} and {access.reason}. To fix: on a machine with internet "
        f"run `huggingface-cli download {download}` (or `hf download {download}`, or "
        f"{first_load} once); copy its Hugging Face cache folder here and set HF_HOME to it "
        "(export HF_HOME=/path/to/huggingface, the folder that holds hub/); set HF_HUB_OFFLINE=1 "
        f"to use only the cache. {instead}"
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars in the block ("Loading weights", "Writing model shards").

    In a notebook they are tqdm widgets without a static fallback; the workbench's own steps
    report progress where it helps.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
