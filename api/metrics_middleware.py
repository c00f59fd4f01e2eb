"""Counts every HTTP request and times it, labelled by the route's template (`/api/v1/tools/{ref}`,
never the raw path, so ids and slugs do not multiply the series) and the status answered."""

from __future__ import annotations

import time
import weakref
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, UNMATCHED_ROUTE

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Routes:
    """An app's routes with their full templates. FastAPI keeps an included router's routes
    with the router's own paths (`/tools/{ref}`) and adds the include prefix (`/api/v1`) when
    it matches; `iter_route_contexts` gives each route with its effective path."""

    def __init__(self, app: Any) -> None:
        routes = list(getattr(getattr(app, "router", None), "routes", ()))
        try:
            from fastapi.routing import iter_route_contexts

            contexts: list[Any] = list(iter_route_contexts(routes))
        except ImportError:  # a FastAPI that flattens included routes: their paths are full
            contexts = routes
        self.matchers = contexts
        self.by_route = {id(getattr(c, "original_route", c)): c.path for c in contexts}

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            path = self.by_route.get(id(route), getattr(route, "path", None))
        else:  # answered before routing (401, 413, 429 from a middleware): where it was going
            path = None
            for candidate in self.matchers:
                try:
                    match, _ = candidate.matches(scope)
                except Exception:  # noqa: S112 - a route that cannot say is not this one
                    continue
                if match is Match.FULL:
                    path = candidate.path
                    break
        return path if isinstance(path, str) and path else UNMATCHED_ROUTE


_tables: weakref.WeakKeyDictionary[Any, _Routes] = weakref.WeakKeyDictionary()


def route_template(scope: Scope) -> str:
    app = scope.get("app")
    if app is None:
        return UNMATCHED_ROUTE
    table = _tables.get(app)
    if table is None:  # built at the first request: every route is added by then
        table = _tables[app] = _Routes(app)
    return table.template(scope)


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes answers 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
