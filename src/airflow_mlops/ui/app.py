"""The Models UI: a FastAPI app the Airflow api-server mounts under ``/mlops`` (see :mod:`.plugin`).

Routes (every one requires an authenticated Airflow user, :func:`~airflow_mlops.ui.auth.authenticated_user`;
there are no unauthenticated routes: no OpenAPI/docs pages either):

``GET /``                   HTML list of the models the user may see
``GET /models/{name}``      HTML page of one model, with charts (``?hours=1..168`` of traffic, default 24)
``GET /models/{name}/versions/{version}/card``  the version's model card (HTML, built from MLflow on request)
``GET /api/models``         the list as JSON: ``{"models": [...], "config_errors": {...}}``
``GET /api/models/{name}``  one model as JSON: ``{"model": {...}, "versions": [...], "charts": {...}, ...}``

401: no or invalid token; 403: the user may not read the model's DAGs; 404: no such model config.
MLflow is waited for at most ``[mlops] ui_mlflow_deadline`` seconds per page (default 10): a model not read by
then shows the error ``MLflow did not answer within N s`` (a model card: 502 with it; see
:mod:`airflow_mlops.ui.sources`).
Responses never contain connection credentials (see :mod:`airflow_mlops.ui.data`), are not cached
(``Cache-Control: no-store``) and HTML carries a strict Content-Security-Policy (nonce'd inline style
and script only; no network fetches).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_mlops import settings
from airflow_mlops.ui import auth, render
from airflow_mlops.ui.data import ModelDetail, ModelSummary, required_actions_url, to_jsonable

if TYPE_CHECKING:
    from airflow_mlops.config.loader import LoadedConfig

DEFAULT_HOURS = 24
MAX_HOURS = 168

User = Annotated[Any, Depends(auth.authenticated_user)]
Hours = Annotated[int, Query(ge=1, le=MAX_HOURS, description="Hours of prediction-log traffic to chart")]

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _csp(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )


def _html(content: str, nonce: str, status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(
        content,
        status_code=status_code,
        headers={**_SECURITY_HEADERS, "Content-Security-Policy": _csp(nonce), **(headers or {})},
    )


def _json(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(to_jsonable(payload), status_code=status_code, headers={**_SECURITY_HEADERS, **(headers or {})})


def _wants_html(request: Request) -> bool:
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    relative = path[len(root) :] if root and path.startswith(root) else path
    return not relative.startswith("/api/")


# -- data ----------------------------------------------------------------------------------------------


def _configs() -> tuple[list[LoadedConfig], dict[str, str]]:
    from airflow_mlops.ui.sources import load_model_configs

    configs = load_model_configs()
    return configs.models, configs.errors


def _visible(user: Any, models: Sequence[LoadedConfig]) -> list[LoadedConfig]:
    return [loaded for loaded in models if auth.can_read_model(user, loaded.name)]


def _summaries(user: Any) -> tuple[list[ModelSummary], dict[str, str]]:
    from airflow_mlops.ui.sources import ModelSources, collect_approvals, summaries_within

    deadline = settings.ui_mlflow_deadline()
    models, errors = _configs()
    visible = _visible(user, models)
    approvals, approvals_error = collect_approvals(visible, lambda dag_id: auth.can_read_approvals(user, dag_id))
    sources = [
        ModelSources(loaded, approvals=approvals[loaded.name], approvals_error=approvals_error) for loaded in visible
    ]
    return summaries_within(sources, deadline), _readable_errors(user, errors)


def _readable_errors(user: Any, errors: dict[str, str]) -> dict[str, str]:
    """Config errors of the files whose ``<file>__config_error`` DAG the user may read, as Airflow shows
    import errors: a broken config's text (paths, values) is not every logged-in user's business."""
    from pathlib import Path

    from airflow_mlops.factories.build import error_dag_id

    return {name: text for name, text in errors.items() if auth.can_read_dag(user, error_dag_id(Path(name)))}


def _readable_config(user: Any, name: str) -> LoadedConfig:
    models, _ = _configs()
    loaded = next((m for m in models if m.name == name), None)
    if loaded is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model config named {name!r}")
    if not auth.can_read_model(user, name):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"not allowed to read the DAGs of model {name!r}")
    return loaded


def _card(user: Any, name: str, version: str, nonce: str) -> str:
    """The version's model card, built from MLflow now (the run's stored card may predate the last answer),
    waited for at most ``[mlops] ui_mlflow_deadline`` seconds like every page."""
    from airflow_mlops.registry.card import render_html
    from airflow_mlops.ui.sources import card_within

    loaded = _readable_config(user, name)
    if not (version.isascii() and version.isdigit()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{name}: no version {version!r} (versions are numbers)")
    card = card_within(loaded, str(int(version)), settings.ui_mlflow_deadline())
    if card is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{name}: no version {version} in MLflow")
    if isinstance(card, str):
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=f"{name} v{version}: {card}")
    return render_html(card, nonce)


def _detail(user: Any, name: str, hours: int) -> ModelDetail:
    from airflow_mlops.ui.sources import ModelSources, collect_approvals

    loaded = _readable_config(user, name)
    approvals, approvals_error = collect_approvals([loaded], lambda dag_id: auth.can_read_approvals(user, dag_id))
    sources = ModelSources(loaded, approvals=approvals[name], approvals_error=approvals_error)
    return sources.detail(hours, settings.ui_mlflow_deadline())


def _all_approvals_url() -> str:
    from airflow_mlops.ui.sources import airflow_base_path

    return required_actions_url(airflow_base_path())


def detail_payload(detail: ModelDetail) -> dict[str, Any]:
    return {
        "model": detail.summary,
        "primary_metric": detail.primary_metric,
        "higher_is_better": detail.higher_is_better,
        "versions": detail.versions,
        "charts": {chart.id: chart for chart in detail.charts},
        "window_hours": detail.window_hours,
        "bucket": detail.bucket,
        "required_actions_url": _all_approvals_url(),
    }


# -- app -----------------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The Models UI app (cheap to build: data sources are imported on the first request)."""
    app = FastAPI(
        title="airflow-mlops models",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if not _wants_html(request):
            return _json({"detail": exc.detail}, exc.status_code, headers)
        nonce = secrets.token_urlsafe(16)
        titles = {401: "Log in to Airflow", 403: "Not allowed", 404: "Not found"}
        link = (auth.login_url(request.url.path), "Log in") if exc.status_code == 401 else None
        page = render.message_page(titles.get(exc.status_code, "Error"), str(exc.detail), nonce, link)
        return _html(page, nonce, exc.status_code, headers)

    @app.get("/", response_class=HTMLResponse, name="models_list")
    def models_list(user: User) -> Response:
        summaries, errors = _summaries(user)
        nonce = secrets.token_urlsafe(16)
        return _html(render.list_page(summaries, errors, _all_approvals_url(), nonce), nonce)

    @app.get("/models/{name}", response_class=HTMLResponse, name="model_page")
    def model_page(name: str, user: User, hours: Hours = DEFAULT_HOURS) -> Response:
        detail = _detail(user, name, hours)
        nonce = secrets.token_urlsafe(16)
        return _html(render.model_page(detail, _all_approvals_url(), nonce), nonce)

    @app.get("/models/{name}/versions/{version}/card", response_class=HTMLResponse, name="model_card")
    def model_card(name: str, version: str, user: User) -> Response:
        nonce = secrets.token_urlsafe(16)
        return _html(_card(user, name, version, nonce), nonce)

    @app.get("/api/models", name="models_json")
    def models_json(user: User) -> Response:
        summaries, errors = _summaries(user)
        return _json({"models": summaries, "config_errors": errors, "required_actions_url": _all_approvals_url()})

    @app.get("/api/models/{name}", name="model_json")
    def model_json(name: str, user: User, hours: Hours = DEFAULT_HOURS) -> Response:
        return _json(detail_payload(_detail(user, name, hours)))

    return app
