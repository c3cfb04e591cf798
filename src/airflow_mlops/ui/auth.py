"""Authentication and authorization of the Models UI with Airflow's own JWTs and auth manager.

Plugin FastAPI apps are mounted by the api-server *without* Airflow's auth, so every route of
:mod:`airflow_mlops.ui.app` depends on :func:`authenticated_user`:

* the token is ``Authorization: Bearer <jwt>`` (REST clients, ``POST /auth/token``) or, without that
  header, the ``_token`` cookie the Airflow UI's browser session carries (it is scoped to the API's
  base path, so it reaches ``/mlops`` on the same origin, also inside the UI's iframe);
* it is validated by the configured auth manager (``get_user_from_token``: signature, expiry,
  audience, revocation), exactly as Airflow's REST API does; a user the api-server's refresh
  middleware already built from the cookie (marked with Airflow's trust sentinel) is accepted as is;
* no token, or a token the auth manager rejects: **401** with ``WWW-Authenticate: Bearer``.

Authorization maps a model onto its DAGs: a user sees a model when the auth manager lets them read
``<model>__train`` (``is_authorized_dag``), and a pending approval only when they may read that DAG's
HITL details. So a deployment's existing DAG permissions decide who sees which model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

log = logging.getLogger(__name__)

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


def auth_manager() -> BaseAuthManager[Any]:
    """The api-server's auth manager (initialized here when the app runs outside the api-server)."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:
        return init_auth_manager()


def request_token(request: Request) -> str | None:
    """The bearer token of the request, else the Airflow UI session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME) or None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _trusted_middleware_user(request: Request) -> Any:
    """The user Airflow's JWT refresh middleware built from the cookie, if it did (root app only)."""
    try:
        from airflow.api_fastapi.core_api.security import USER_INJECTED_BY_TRUSTED_MIDDLEWARE
    except ImportError:  # pragma: no cover - older layouts
        return None
    user = getattr(request.state, "user", None)
    marker = getattr(request.state, "user_authenticated_via", None)
    if user is not None and marker is USER_INJECTED_BY_TRUSTED_MIDDLEWARE:
        return user
    return None


async def authenticated_user(request: Request) -> Any:
    """FastAPI dependency: the Airflow user of the request, or 401."""
    has_bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
    if not has_bearer and (user := _trusted_middleware_user(request)) is not None:
        return user
    token = request_token(request)
    if not token:
        raise _unauthorized("Not authenticated: send 'Authorization: Bearer <token>' or log in to Airflow")
    try:
        return await auth_manager().get_user_from_token(token)
    except Exception as exc:  # InvalidTokenError, ExpiredSignatureError, a user the manager cannot build...
        log.info("models UI: rejected token (%s)", type(exc).__name__)
        raise _unauthorized("Invalid or expired token") from None


def can_read_dag(user: Any, dag_id: str) -> bool:
    """May ``user`` read the DAG ``dag_id``? (an error of the check is a no: fail closed)"""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    try:
        return bool(auth_manager().is_authorized_dag(method="GET", user=user, details=DagDetails(id=dag_id)))
    except Exception:
        log.exception("models UI: authorization check failed for %s", dag_id)
        return False


def can_read_model(user: Any, model: str) -> bool:
    """May ``user`` see ``model``? (= may read its ``<model>__train`` DAG)."""
    return can_read_dag(user, f"{model}__train")


def can_read_approvals(user: Any, dag_id: str) -> bool:
    """May ``user`` see the HITL requests (required actions) of ``dag_id``?"""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    try:
        return bool(
            auth_manager().is_authorized_dag(
                method="GET", user=user, access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=dag_id)
            )
        )
    except Exception:
        log.exception("models UI: authorization check failed for approvals of %s", dag_id)
        return False


def login_url(next_url: str | None = None) -> str:
    """Where the Airflow UI logs users in (the auth manager's page)."""
    try:
        return str(auth_manager().get_url_login(next_url=next_url) if next_url else auth_manager().get_url_login())
    except Exception:
        return "/"
