"""Static files and /docs: the hub's own assets and Swagger UI's, served by the hub so /docs works offline."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hub.pages import render

HUB_STATIC = Path(__file__).parent / "static"
# Swagger UI's dist files (bundle, CSS, favicon) as the fastapi-offline package installs them.
SWAGGER_UI_STATIC = Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Mount /static (Swagger UI under /static/swagger-ui) and serve /docs; create the app with docs_url=None."""
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_STATIC), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=HUB_STATIC), name="static")
    title, openapi_url = app.title, app.openapi_url

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render("docs.html", title=title, openapi_url=openapi_url))
