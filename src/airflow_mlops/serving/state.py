"""Follow the deployment state in the MLflow registry: which version serves which role, and how much canary.

A background thread polls each model's aliases and the ``mlops.canary_percent`` tag every
``poll_interval`` seconds (default 1 s, so a change in MLflow takes effect within seconds, without a
restart). New versions are verified and loaded by that thread *before* the routing table switches,
so requests never wait for a load; a version that fails to load is not routed to.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_mlops.serving.models import ModelCache, ModelLoadError
from airflow_mlops.vocabulary import Alias, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routing:
    """The routing table of one model at one moment (versions as strings)."""

    champion: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    shadow: str | None = None


@dataclass
class WatchStatus:
    last_poll: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def _percent(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
    return min(max(value, 0.0), 100.0)


class RegistryWatcher:
    def __init__(self, client: MlflowClient, cache: ModelCache, models: list[str], poll_interval: float = 1.0) -> None:
        self._client = client
        self._cache = cache
        self.models = list(models)
        self.poll_interval = poll_interval
        self._routing: dict[str, Routing] = {}
        self.status = WatchStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def routing(self, model: str) -> Routing | None:
        return self._routing.get(model)

    def refresh(self) -> None:
        """Poll the registry once for every model and switch routing tables that changed."""
        for model in self.models:
            try:
                self._routing[model] = self._read(model)
                self.status.errors.pop(model, None)
            except Exception as exc:  # keep serving the last good table; report it on /ready
                self.status.errors[model] = f"{type(exc).__name__}: {exc}"
                log.warning("Could not refresh %s from the registry: %s", model, exc)
        self.status.last_poll = time.time()

    def _read(self, model: str) -> Routing:
        registered = self._client.get_registered_model(model)
        aliases = {alias: str(version) for alias, version in registered.aliases.items()}
        previous = self._routing.get(model, Routing())
        champion = self._usable(model, aliases.get(Alias.CHAMPION), previous.champion)
        canary = self._usable(model, aliases.get(Alias.CANARY), None)
        shadow = self._usable(model, aliases.get(Alias.SHADOW), None)
        percent = _percent(registered.tags.get(Tag.CANARY_PERCENT)) if canary else 0.0
        return Routing(champion=champion, canary=canary, canary_percent=percent, shadow=shadow)

    def _usable(self, model: str, version: str | None, fallback: str | None) -> str | None:
        """``version`` if it loads (verified); else ``fallback`` (the role keeps its last good version)."""
        if version is None:
            return None
        try:
            self._cache.load(model, version)
        except ModelLoadError:
            return fallback
        return version

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="mlops-registry-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
