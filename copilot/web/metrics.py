"""GET /metrics: request counts and latencies, engine queue and generation speed, in the
Prometheus text format for IT's monitoring. Labels are endpoints and status codes only:
no patient data, so the scrape needs no token."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("copilot_http_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("copilot_http_request_seconds", "Time to the response headers (streams: to the "
                                 "first byte)", ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue = Gauge("copilot_engine_queue_depth", "Generations waiting for the engine", registry=self.registry)
        self.slots = Gauge("copilot_generation_slots_in_use", "Generations admitted by the web tier (streams open)",
                           registry=self.registry)
        self.slots_total = Gauge("copilot_generation_slots", "Generation slots; callers beyond them get 503",
                                 registry=self.registry)
        self.tokens = Counter("copilot_generated_tokens", "Tokens generated", ["kind"], registry=self.registry)
        self.speed = Histogram("copilot_decode_tokens_per_second", "Decode speed per draft or generation", ["kind"],
                               buckets=(5, 10, 20, 40, 60, 80, 100, 150, 200, 400), registry=self.registry)


def init_app(app) -> None:
    app.extensions["copilot.metrics"] = Metrics()
    app.before_request(_start)
    app.after_request(_count)


def observe_generation(kind: str, tokens: int, tokens_per_s: float | None) -> None:
    metrics = current_app.extensions["copilot.metrics"]
    metrics.tokens.labels(kind).inc(tokens)
    if tokens_per_s:
        metrics.speed.labels(kind).observe(tokens_per_s)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _count(response):
    metrics = current_app.extensions["copilot.metrics"]
    endpoint = request.endpoint or "unmatched"
    metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions["copilot.metrics"]
    engine = current_app.extensions.get("copilot.engine")
    registry.queue.set(engine.queue_depth if engine is not None else 0)
    gate = current_app.extensions.get("copilot.admission")
    if gate is not None:
        registry.slots.set(gate.in_use)
        registry.slots_total.set(gate.slots)
    return Response(generate_latest(registry.registry), mimetype=CONTENT_TYPE_LATEST)
