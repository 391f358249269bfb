"""Prometheus metrics: one registry per app, served by GET /api/metrics.

Two kinds of value:
- counted in this process as things happen (HTTP requests, provider calls, webhook
  attempts, agent running time): prometheus-client counters and a histogram, reset
  when the process restarts, which Prometheus' rate() expects;
- read from SQLite and the circuit breakers at scrape time (agents by model and status,
  spend, budget, provider windows, circuits) by StateCollector, so they are never stale
  and agree with /orchestrator/status.

Services call the module functions below (agent_event, provider_call, webhook_delivery);
they find the app's Metrics through current_app and do nothing outside an app context.
Anything observed inside a transaction is counted once the transaction commits.
"""
from __future__ import annotations

import sqlite3

from flask import Flask, current_app, has_app_context, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .db import after_commit, connection_for
from .services import budget, clock, limits, providers

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
EXTENSION = "j1msky_metrics"
STATUSES = ("spawning", "running", "completed", "failed", "cancelled")
FINISHED = {"agent.completed": "completed", "agent.failed": "failed",
            "agent.cancelled": "cancelled"}
WEBHOOK_OUTCOMES = ("delivered", "retry", "failed", "disabled")
# Agents run for seconds to an hour (agents.max_timeout).
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# Any token is a valid HTTP method; label only the real ones so cardinality stays bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# name -> (help, labels) of the values StateCollector reads at scrape time.
STATE_FAMILIES = {
    "j1msky_agents": ("Agents stored, by model and status (finished ones until retention"
                      " removes them); a team counts under its first step's model",
                      ["model", "status"]),
    "j1msky_spend_today_dollars": ("Spend charged to today's budget day", []),
    "j1msky_daily_budget_dollars": ("The configured daily budget", []),
    "j1msky_budget_utilization_ratio": ("Today's spend / the daily budget (1 = exhausted)", []),
    "j1msky_provider_window_calls": ("Calls counted against a provider in the current"
                                     " clock-hour window", ["provider"]),
    "j1msky_provider_hourly_limit": ("A provider's configured hourly call limit", ["provider"]),
    "j1msky_provider_circuit_open": ("1 while a provider's circuit breaker is open (calls go"
                                     " straight to the fallback), else 0", ["provider"]),
}


class StateCollector(Collector):
    """Gauges read from the database, config and circuit breakers on every scrape."""

    def __init__(self, app: Flask):
        self.app = app

    def describe(self):
        """The families without samples: lets the registry check names without a query."""
        return list(self.families().values())

    @staticmethod
    def families() -> dict[str, GaugeMetricFamily]:
        return {name: GaugeMetricFamily(name, doc, labels=labels)
                for name, (doc, labels) in STATE_FAMILIES.items()}

    def collect(self):
        config = self.app.extensions["j1msky_config"].get()
        conn = connection_for(self.app.config["DATABASE"])
        out = self.families()
        for (model, status), count in agent_counts(conn, config).items():
            out["j1msky_agents"].add_metric([model, status], count)
        spent = budget.today_spend(conn, config)
        out["j1msky_spend_today_dollars"].add_metric([], budget.dollars(spent))
        out["j1msky_daily_budget_dollars"].add_metric([], config["budget"]["daily"])
        daily = budget.micros(config["budget"]["daily"])
        out["j1msky_budget_utilization_ratio"].add_metric([], spent / daily if daily else 1.0)
        for name, window in limits.usage(conn, config).items():
            out["j1msky_provider_window_calls"].add_metric([name], window["used"])
            out["j1msky_provider_hourly_limit"].add_metric([name], window["limit"])
        states = providers.breaker_states()
        for name in sorted(set(config["providers"]) | set(states)):
            out["j1msky_provider_circuit_open"].add_metric(
                [name], 1 if states.get(name) == "open" else 0)
        return list(out.values())


def agent_counts(conn: sqlite3.Connection, config: dict) -> dict[tuple[str, str], int]:
    """Count per (model, status): zero for every configured model and status, so a
    series exists before its first agent (rate() and absent() need that)."""
    counts = {(model, status): 0 for model in config["models"] for status in STATUSES}
    for model, status, count in conn.execute(  # the running totals: no scan of the agents
            "SELECT model, status, agents FROM agent_totals WHERE agents > 0"):
        counts[(model, status)] = count
    return counts


class Metrics:
    """The app's registry and the metrics this process counts."""

    def __init__(self, app: Flask):
        # No *_created series: a second series per counter child that dashboards never use.
        # (A process-wide switch in prometheus-client; J1MSKY is its only user here.)
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "j1msky_http_requests", "HTTP requests answered, by route template (the URL"
            " rule, not the path; 'unmatched' when no route matched), method and status",
            ["route", "method", "status"], registry=self.registry)
        self.provider_calls = Counter(
            "j1msky_provider_calls", "HTTP attempts sent to a provider (retries included;"
            " the simulator is never counted)", ["provider"], registry=self.registry)
        self.webhook_deliveries = Counter(
            "j1msky_webhook_deliveries", "Webhook delivery attempts by outcome: delivered,"
            " retry (scheduled again), failed (gave up), disabled (receiver answered 410)",
            ["outcome"], registry=self.registry)
        self.agent_duration = Histogram(
            "j1msky_agent_duration_seconds", "Running time (started to finished) of agents"
            " that finished, by model and final status", ["model", "status"],
            buckets=DURATION_BUCKETS, registry=self.registry)
        self.request_counters: dict[tuple[str, str, int], Counter] = {}
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)
        self.registry.register(StateCollector(app))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds

    def request_counter(self, route: str, method: str, status: int) -> Counter:
        """The http_requests child of these labels, looked up once (labels() takes a
        lock and builds its key on every call)."""
        key = (route, method, status)
        child = self.request_counters.get(key)
        if child is None:
            child = self.request_counters[key] = self.http_requests.labels(
                route, method, str(status))
        return child

    def exposition(self, config: dict) -> bytes:
        """The registry in the Prometheus text format (0.0.4)."""
        for name in config["providers"]:
            self.provider_calls.labels(name)  # a zero series for providers not yet called
        return generate_latest(self.registry)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Metrics(app)
    app.after_request(count_request)


def count_request(response):
    """Count every answered request by its URL rule (bounded), method and status."""
    rule = request.url_rule
    method = request.method if request.method in METHODS else "OTHER"
    current_app.extensions[EXTENSION].request_counter(
        rule.rule if rule is not None else "unmatched", method, response.status_code).inc()
    return response


def current() -> Metrics | None:
    """The current app's Metrics; None outside an app context."""
    return current_app.extensions.get(EXTENSION) if has_app_context() else None


def agent_event(conn: sqlite3.Connection, event_type: str, row: sqlite3.Row) -> None:
    """An agent event was recorded: observe a finished agent's running time once the
    transaction commits. Agents cancelled before they started have none."""
    metrics, status = current(), FINISHED.get(event_type)
    if metrics is None or status is None or not row["started_at"] or not row["completed_at"]:
        return
    seconds = (clock.parse(row["completed_at"]) - clock.parse(row["started_at"])).total_seconds()
    observe = metrics.agent_duration.labels(row["model"] or "", status).observe
    after_commit(conn, lambda: observe(max(seconds, 0.0)))


def provider_call(provider: str) -> None:
    """One HTTP attempt to a provider is about to be sent (already counted in its window)."""
    metrics = current()
    if metrics is not None:
        metrics.provider_calls.labels(provider).inc()


def webhook_delivery(conn: sqlite3.Connection, outcome: str) -> None:
    """A delivery attempt was recorded with this outcome (counted when it commits)."""
    metrics = current()
    if metrics is not None:
        after_commit(conn, metrics.webhook_deliveries.labels(outcome).inc)
