"""One error shape for every answer that is not a success: ``{"detail": str, "code": str}``.

``detail`` says what was wrong in a sentence; ``code`` is a stable name a client can branch on
(``not_found``, ``bad_request``, ``too_large``, ``invalid_request`` for a parameter that does
not validate, ...), whatever raised it: an endpoint, FastAPI's validation, Starlette's router
(404, 405) or the body limit (:mod:`street2shop.service.security`).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

#: Codes that say more than the status's name.
_CODES = {413: "too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "not_ready"}


def error_code(status: int) -> str:
    if status in _CODES:
        return _CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def error_body(status: int, detail: object) -> dict:
    return {"detail": detail if isinstance(detail, str) else str(detail), "code": error_code(status)}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = " ".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def document_error_shape(app: FastAPI) -> None:
    """OpenAPI says what the handlers do: a 422 is an ``ErrorDetail`` too, not FastAPI's list."""
    from fastapi.openapi.utils import get_openapi

    from street2shop.service.schemas import ErrorDetail

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["ErrorDetail"] = ErrorDetail.model_json_schema(ref_template="#/components/schemas/{model}")
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    if "422" in operation.get("responses", {}):
                        operation["responses"]["422"] = {
                            "description": "a parameter or form field that does not validate",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
                        }
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, exc.detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, _validation_detail(exc)), status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log, never to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; it was logged", "code": "internal_error"}, status_code=500)

    document_error_shape(app)


__all__ = ["document_error_shape", "error_body", "error_code", "install_error_handlers"]
