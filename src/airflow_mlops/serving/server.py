"""Run the gateway on uvicorn: ``airflow-mlops serve --model fraud --port 8001 [--admin-port 9001]``.

With ``admin_port``, one uvicorn server listens on both ports (one event loop, one gateway, one
lifespan, uvicorn's own SIGTERM/SIGINT handling, which drains and closes both listeners before the
gateway stops): predict and feedback on ``port``, ``/ready`` and ``/metrics`` on ``admin_port`` (see
:func:`airflow_mlops.serving.app.create_app`). Without it, everything is on ``port``, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from airflow_mlops.serving.app import GatewaySettings
    from airflow_mlops.serving.shadow import ShadowWorkerOptions

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    models: list[str]
    tracking_uri: str
    registry_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = 8001
    #: Serve ``/ready`` and ``/metrics`` only on this port (404 on ``port``); None: everything on ``port``.
    admin_port: int | None = None
    #: The admin listener's address; None: the same as ``host``.
    admin_host: str | None = None
    log_root: str = "prediction-log"
    log_mode: Literal["batched", "strict"] = "batched"
    flush_interval: float = 1.0
    log_conn_id: str | None = None
    wal_dir: str | None = None
    #: Batched mode: rows held in memory while the log's store is down (oldest dropped and counted beyond).
    max_pending: int = 100_000
    poll_interval: float = 1.0
    max_batch: int = 1000
    #: Seconds an idle keep-alive connection stays open. Longer than clients' and load balancers' own idle
    #: timeouts (httpx 5 s, AWS ALB 60 s), so the client closes first: with equal timeouts a request sent
    #: on a connection the server is closing at that moment fails with a connection reset.
    keep_alive: float = 75.0
    #: API keys (one per line) required on /predict and /feedback; or an Airflow connection holding them.
    api_keys_file: str | None = None
    api_keys_conn_id: str | None = None
    #: Requests per second per client (API key, else address), with bursts of ``rate_burst``; None: no limit.
    rate_limit: float | None = None
    rate_burst: float = 50.0
    #: Request bodies beyond this many bytes are refused (413).
    max_body_bytes: int = 1 << 20
    #: A file holding the secret that keys the canary split (give replicas the same; default: random).
    routing_key_file: str | None = None
    #: ``process``: the shadow predicts in its own process at the lowest CPU priority; ``thread``: in this one.
    shadow_mode: Literal["process", "thread"] = "process"
    #: Percent (0-100) of live requests mirrored to the shadow.
    shadow_share: float = 100.0
    #: Mirrored requests waiting beyond this many are dropped (and counted).
    shadow_queue: int = 1000
    extra: dict[str, str] = field(default_factory=dict)


def build_gateway(options: ServeOptions) -> object:
    """The gateway object (not started), for tests and for :func:`serve`."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.prediction_log import PredictionLog
    from airflow_mlops.serving.app import Gateway
    from airflow_mlops.serving.models import ModelCache
    from airflow_mlops.serving.state import RegistryWatcher

    client = mlflow.MlflowClient(
        tracking_uri=options.tracking_uri, registry_uri=options.registry_uri or options.tracking_uri
    )
    cache = ModelCache(client)
    watcher = RegistryWatcher(client, cache, options.models, poll_interval=options.poll_interval)
    plog = PredictionLog(
        prediction_log_storage(options.log_root, options.log_conn_id),
        mode=options.log_mode,
        flush_interval=options.flush_interval,
        wal_dir=options.wal_dir,
        max_pending=options.max_pending,
    )
    return Gateway(_settings(options), cache, watcher, plog)


def _shadow_worker(options: ServeOptions) -> ShadowWorkerOptions | None:
    """The shadow process's options: the same registry and log root; its own spill folder under the WAL's."""
    from pathlib import Path

    from airflow_mlops.serving.shadow import ShadowWorkerOptions

    if options.shadow_mode == "thread":
        return None
    if options.wal_dir:
        wal_dir: str | None = str(Path(options.wal_dir) / "shadow")
    elif "://" not in options.log_root:
        wal_dir = str(Path(options.log_root) / "_wal" / "shadow")
    else:
        wal_dir = None
    return ShadowWorkerOptions(
        tracking_uri=options.tracking_uri,
        registry_uri=options.registry_uri,
        log_root=options.log_root,
        log_conn_id=options.log_conn_id,
        flush_interval=options.flush_interval,
        wal_dir=wal_dir,
        max_pending=options.max_pending,
        max_batch=options.max_batch,
    )


def _settings(options: ServeOptions) -> GatewaySettings:
    """The gateway's settings, with its API keys, rate limit and routing key loaded (failing loudly)."""
    from pathlib import Path

    from airflow_mlops.serving.app import GatewaySettings
    from airflow_mlops.serving.guard import ApiKeys, RateLimiter

    if options.api_keys_file and options.api_keys_conn_id:
        raise ValueError("give api_keys_file or api_keys_conn_id, not both")
    keys = ApiKeys()
    if options.api_keys_file:
        keys = ApiKeys.from_file(options.api_keys_file)
    elif options.api_keys_conn_id:
        keys = ApiKeys.from_connection(options.api_keys_conn_id)
    settings = GatewaySettings(
        models=options.models,
        max_batch=options.max_batch,
        api_keys=keys,
        rate_limit=RateLimiter(options.rate_limit, options.rate_burst) if options.rate_limit else None,
        max_body_bytes=options.max_body_bytes,
        shadow_queue=options.shadow_queue,
        shadow_share=options.shadow_share / 100.0,
        shadow_worker=_shadow_worker(options),
    )
    if not 0.0 <= options.shadow_share <= 100.0:
        raise ValueError(f"shadow_share: got {options.shadow_share}; expected a percentage from 0 to 100")
    if options.shadow_queue < 1:
        raise ValueError(f"shadow_queue: got {options.shadow_queue}; expected at least 1")
    if options.routing_key_file:
        key = Path(options.routing_key_file).read_bytes().strip()
        if len(key) < 16:
            raise ValueError(f"{options.routing_key_file}: the routing key must hold at least 16 bytes")
        settings.routing_key = key[:64]
    return settings


def serve(options: ServeOptions) -> None:
    import contextlib
    from collections.abc import AsyncIterator

    import uvicorn

    from airflow_mlops.serving.app import ByListener, Gateway, create_app

    if options.admin_port is not None and options.admin_port == options.port and options.port != 0:
        raise ValueError(f"admin_port: got {options.admin_port}, the same as port; give the admin listener its own")
    gateway = build_gateway(options)
    assert isinstance(gateway, Gateway)

    @contextlib.asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        gateway.start()
        try:
            yield
        finally:
            gateway.stop()

    keep_alive = int(options.keep_alive)
    if options.admin_port is None:
        uvicorn.run(
            create_app(gateway, lifespan=lifespan),
            host=options.host,
            port=options.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=keep_alive,
        )
        return
    # Both sockets are bound before anything starts, so a port in use stops the process at once (exit 1).
    admin_host = options.admin_host or options.host
    public_app = create_app(gateway, "public", lifespan=lifespan)
    public_socket = uvicorn.Config(public_app, host=options.host, port=options.port, log_level="warning").bind_socket()
    admin_socket = uvicorn.Config(
        public_app, host=admin_host, port=options.admin_port, log_level="warning"
    ).bind_socket()
    app = ByListener(public_app, create_app(gateway, "admin"), admin_port=int(admin_socket.getsockname()[1]))
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=keep_alive)
    uvicorn.Server(config).run(sockets=[public_socket, admin_socket])
