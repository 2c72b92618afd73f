"""The FastAPI app factory. The lifespan starts the scheduler thread (which loads and warms the engines), the
job workers and the session reaper, and stops them in reverse order on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import http_errors
from .auth import Auth, banner
from .job_runner import JobRunner
from .jobs import JobStore
from .metrics import Metrics, RequestMetricsMiddleware
from .routes_jobs import router as jobs_router
from .routes_streams import router as streams_router
from .routes_webrtc import router as webrtc_router
from .runtime import Runtime
from .scheduler import Scheduler
from .sessions import SessionManager
from .settings import Settings, load_settings
from .slots import SlotPool
from .upload_limit import UploadLimitMiddleware
from .webrtc.manager import CallManager

log = logging.getLogger("s2vc.server")
# The browser call page (static files of the client package, found without importing it: clients/web in a checkout,
# s2vc_clients/web when installed).
WEB_DIR = Path(importlib.util.find_spec("s2vc_clients").submodule_search_locations[0]) / "web"  # type: ignore[union-attr,index]

DESCRIPTION = """S²VC streaming server. REST jobs (`/v1/jobs`) code whole files and survive restarts; streams
(`/v1/streams`) code raw frames to bitstream units (and back) as they arrive, batched across sessions; WebRTC calls
(`/v1/webrtc`) code a camera live (docs/webrtc.md). The browser call page is at `/`.
Every `/v1` route needs `Authorization: Bearer <API key>`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.auth = Auth(settings)
        print(banner(settings, state.auth), file=sys.stderr, flush=True)
        state.jobs = JobStore(settings.data_dir)
        state.jobs.recover(settings.job_max_attempts)
        state.runtime = Runtime(settings, metrics)
        state.scheduler = Scheduler(state.runtime, settings, metrics)
        state.scheduler.start()
        state.runner = JobRunner(state.jobs, state.scheduler, state.runtime, settings, metrics)
        state.runner.start()
        slots = SlotPool(settings, metrics)  # shared by streams and calls
        state.calls = CallManager(settings, state.runtime, state.scheduler, metrics, slots)
        state.sessions = SessionManager(settings, state.scheduler, metrics, slots)
        reapers = [asyncio.create_task(state.sessions.reap_forever()), asyncio.create_task(state.calls.reap_forever())]
        log.info("serving; data directory %s; jobs %s", settings.data_dir, state.jobs.counts() or "none")
        try:
            yield
        finally:
            for reaper in reapers:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
            await state.calls.close_all()
            state.sessions.close_all()
            state.runner.stop()
            await asyncio.to_thread(state.scheduler.stop)
            state.jobs.close()

    app = FastAPI(title="s2vc", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(jobs_router)
    app.include_router(streams_router)
    app.include_router(webrtc_router)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    app.add_middleware(UploadLimitMiddleware, settings=settings, paths=("/v1/jobs",))
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    http_errors.install(app)

    @app.get("/", include_in_schema=False)
    def call_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/v2/health/live", tags=["health"], summary="The process is up (503 when its engines failed to load)")
    def live(request: Request) -> JSONResponse:
        error = request.app.state.runtime.error
        return JSONResponse({"live": error is None, "error": error}, status_code=503 if error else 200)

    @app.get("/v2/health/ready", tags=["health"], summary="Engines loaded and warm (503 until then)")
    def ready(request: Request) -> JSONResponse:
        state = request.app.state
        runtime = state.runtime
        body = {
            "ready": runtime.ready.is_set(), "error": runtime.error, "engine": settings.engine, "device": settings.device,
            "models": [m.describe() for m in runtime.models.values()], "dev_mode": settings.dev_mode,
            "sessions": {"active": len(state.sessions.sessions), "max": settings.max_sessions},
        }
        return JSONResponse(body, status_code=200 if runtime.ready.is_set() else 503, headers={} if runtime.ready.is_set() else {"Retry-After": "5"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (prefix s2vc_)")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
