"""Whether the Hugging Face hub can be reached, and what to say when something is not in its local cache.

One short connection attempt per process (``hub_status``); ``HF_HUB_OFFLINE=1`` wins without one. The
loaders of ``utils.lm.loading`` (models, corpora) and ``utils.sae.pretrained`` (SAEs) read files through
``hub_access`` so that, offline, cached files load at once instead of waiting on network time-outs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import datasets.config
import huggingface_hub

__all__ = ["MISSING_OFFLINE", "hub_access", "hub_status", "not_available"]

_HUB_PROBE_TIMEOUT_S = 2.0
_hub_probe_result: tuple[bool, str] | None = None  # one connection attempt per process


def _offline_flag() -> bool:
    """Whether the user asked for offline mode (env var now, or huggingface_hub's flag read at import)."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def hub_status(refresh: bool = False) -> tuple[bool, str]:
    """``(reachable, reason)`` for the Hugging Face hub: ``HF_HUB_OFFLINE=1`` wins, else one 2 s TCP connect."""
    global _hub_probe_result
    if _offline_flag():
        return False, "hub unreachable (HF_HUB_OFFLINE=1)"
    if _hub_probe_result is None or refresh:
        endpoint = urlparse(huggingface_hub.constants.ENDPOINT)
        host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
        failure = _connect_failure(host, port)
        if failure is None:
            _hub_probe_result = (True, f"hub reachable ({host}:{port})")
        else:
            _hub_probe_result = (False, f"hub unreachable (no connection to {host}:{port}: {failure})")
    return _hub_probe_result


def _connect_failure(host: str, port: int) -> str | None:
    """None if a TCP connection to host:port opens within the timeout, else what went wrong.

    The attempt runs in a thread so that a slow DNS lookup (not covered by the socket timeout) cannot stall us.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(_HUB_PROBE_TIMEOUT_S)
    return outcome[0] if outcome else "timed out"


@contextlib.contextmanager
def hub_access() -> Iterator[bool]:
    """Yield whether the hub is reachable; when it is not, put huggingface_hub/datasets in offline mode
    for the duration, so cached files load at once instead of waiting on network timeouts."""
    reachable, _ = hub_status()
    if reachable:
        yield True
        return
    flags = [(huggingface_hub.constants, "HF_HUB_OFFLINE")]
    flags += [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in flags if hasattr(obj, name)]
    try:
        for obj, name, _ in saved:
            setattr(obj, name, True)
        yield False
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


# What huggingface_hub/datasets raise offline for a file that is not cached (LocalEntryNotFoundError is a
# FileNotFoundError, OfflineModeIsEnabled a ConnectionError).
MISSING_OFFLINE = (FileNotFoundError, ConnectionError)


def _repo_cache_folder(repo_id: str, repo_type: str = "model") -> Path:
    return Path(huggingface_hub.constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def not_available(what: str, repo_id: str, reason: str, repo_type: str = "model") -> FileNotFoundError:
    return FileNotFoundError(
        f"Could not load {what}: {reason}, and {repo_id} is not in the local Hugging Face cache "
        f"(checked {_repo_cache_folder(repo_id, repo_type)}). Fixes: connect to the internet (and unset "
        f'HF_HUB_OFFLINE) so it downloads once, or use the bundled offline model: "gelu-1l-mini".'
    )
