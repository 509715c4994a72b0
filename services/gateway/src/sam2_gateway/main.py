"""The gateway app: settings in, routes and middleware wired, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractResolver
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from sam2_contract.problems import (
    REQUEST_ID_HEADER,
    install_problem_handlers,
    install_request_ids,
    problem_response,
)
from sam2_contract.validation import invalid_fields
from sam2_contract.wire import FORWARDED_HEADERS
from starlette.types import Scope

from sam2_gateway.api.deps import Gateway
from sam2_gateway.api.openapi import build_openapi
from sam2_gateway.api.routes import auth, client_decode, health, jobs, segment, usage, video
from sam2_gateway.api.worker import JobWorker
from sam2_gateway.backends import HttpBackend
from sam2_gateway.core.answers import AnswerMemory
from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.core.fetch import ImageFetcher
from sam2_gateway.core.job_files import JobFiles, JobResults
from sam2_gateway.core.jobs import JobStore
from sam2_gateway.core.logs import AccessLogMiddleware
from sam2_gateway.core.metering import UsageMeter, journal_for
from sam2_gateway.core.ratelimit import RateLimiter
from sam2_gateway.core.store import KeyStore
from sam2_gateway.core.tokens import TokenSigner
from sam2_gateway.hop import InferenceBackend

PLAYGROUND = Path(__file__).parent / "playground"
WEBHOOK_TIMEOUT_S = 10.0
EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    "ETag",  # the decoder's, for a browser SDK on another origin to revalidate it
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    *FORWARDED_HEADERS,
]


def create_app(
    settings: GatewaySettings | None = None,
    *,
    backend: InferenceBackend | None = None,
    resolver: AbstractResolver | None = None,
    job_files: JobFiles | None = None,
    job_results: JobResults | None = None,
) -> FastAPI:
    """The gateway; `backend` replaces the configured inference backend (tests, Modal),
    `resolver` the DNS resolver `image_url` fetches use (tests), `job_files` where files
    uploaded with jobs are kept and `job_results` where their answers are (Modal: a Volume
    shared with the job workers)."""
    settings = settings or GatewaySettings()
    store = KeyStore(
        settings.database_url,
        settings.key_pepper.get_secret_value(),
        timeout_s=settings.database_timeout_s,
        retry_s=settings.dependency_retry_s,
    )
    limiter = RateLimiter(
        settings.rate_limit_storage,
        settings.rate_tiers,
        settings.concurrency_tiers,
        timeout_s=settings.redis_timeout_s,
        retry_s=settings.dependency_retry_s,
    )
    journal = journal_for(settings.usage_journal, settings.rate_limit_storage, limiter.guard)
    files = job_files or JobFiles(settings.job_files_dir)
    results_dir = settings.job_files_dir / "results"
    gateway = Gateway(
        settings=settings,
        store=store,
        signer=TokenSigner(
            settings.jwt_private_key.get_secret_value(),
            key_id=settings.jwt_key_id,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            retired_public_keys=settings.jwt_previous_public_keys,
        ),
        limiter=limiter,
        backend=backend or make_backend(settings),
        meter=UsageMeter(store, journal=journal),
        answers=AnswerMemory(settings.max_answer_bytes, settings.answer_memory_bytes),
        fetcher=ImageFetcher(
            max_bytes=settings.image_url_max_bytes,
            timeout_s=settings.image_url_timeout_s,
            allow_http=settings.image_url_allow_http,
            allowed_networks=settings.image_url_allowed_networks,
            resolver=resolver,
        ),
        jobs=JobStore(store.engine, job_results or JobResults(results_dir), files),
        job_files=files,
        webhooks=ImageFetcher(
            max_bytes=0,
            timeout_s=WEBHOOK_TIMEOUT_S,
            allow_http=settings.webhook_allow_http,
            allowed_networks=settings.webhook_allowed_networks,
            resolver=resolver,
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway.store.migrate()
        gateway.meter.start()
        worker = JobWorker(
            gateway,
            gateway.jobs,
            concurrency=settings.job_workers,
            lease_s=settings.job_lease_s,
            retry_s=settings.webhook_retry_s,
        )
        app.state.job_worker = worker
        worker.start()
        yield
        await worker.stop()
        await gateway.webhooks.aclose()
        await gateway.meter.stop()
        await gateway.backend.aclose()
        await gateway.fetcher.aclose()
        await gateway.limiter.aclose()
        gateway.store.dispose()

    app = FastAPI(
        title="SAM2 API",
        version="1.0.0",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
    )
    app.openapi = lambda: app.openapi_schema or _cache_openapi(app)  # type: ignore[method-assign]
    app.state.gateway = gateway
    app.state.decoders = {}  # model name -> (ONNX bytes, ETag), fetched from inference once
    app.state.decoders_lock = asyncio.Lock()
    routers = (segment, video, client_decode, jobs, auth, usage, health)
    for router in (module.router for module in routers):
        app.include_router(router)
    app.include_router(jobs.webhooks)
    if (PLAYGROUND / "index.html").is_file():  # built by scripts/dev and scripts/test
        app.mount("/playground", IsolatedFiles(directory=PLAYGROUND, html=True), name="playground")
    install_problem_handlers(app)
    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    app.add_middleware(AccessLogMiddleware)
    install_request_ids(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-API-Key",
            "If-None-Match",
            REQUEST_ID_HEADER,
        ],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    return app


class IsolatedFiles(StaticFiles):
    """The playground's files, cross-origin isolated (COOP and COEP: it loads nothing from
    another origin), so that onnxruntime-web may decode clicks on several WASM threads."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cross-origin-opener-policy"] = "same-origin"
        response.headers["cross-origin-embedder-policy"] = "require-corp"
        return response


def _cache_openapi(app: FastAPI) -> dict[str, Any]:
    app.openapi_schema = build_openapi(app)
    return app.openapi_schema


def make_backend(settings: GatewaySettings) -> InferenceBackend:
    return HttpBackend(
        settings.inference_url,
        timeout_s=settings.inference_timeout_s,
        connect_timeout_s=settings.inference_connect_timeout_s,
        auth_headers=settings.inference_auth_headers,
        startup_wait_s=settings.inference_startup_wait_s,
        start_estimate_s=settings.inference_start_estimate_s,
    )


async def _invalid_parameters(request: Request, exc: Exception) -> Response:
    """A query parameter FastAPI refused, as the same 422 problem a body field gets."""
    assert isinstance(exc, RequestValidationError)
    return problem_response(invalid_fields(exc.errors()), request)
