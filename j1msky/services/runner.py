"""The agent runner: a priority queue feeding a pool of worker threads."""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from functools import partial

from flask import Flask, current_app

from .. import metrics
from ..config import current as current_config
from ..db import get_db, power_cut_safe, transaction
from ..errors import APIError
from . import agentdata, agents, catalog, ledger, limits, providers

log = logging.getLogger(__name__)
STOP = (-1, -1, None)  # sorts before any agent: workers see it first at shutdown


class Runner:
    """Runs admitted agents: high before normal before low, FIFO within a level."""

    def __init__(self, app: Flask):
        self.app = app
        self.queue: queue.PriorityQueue = queue.PriorityQueue()
        self.order = itertools.count()
        self.cancels: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Recover from the last run, then start the workers."""
        providers.reset_breakers()
        with self.app.app_context():
            config = current_config()
            with transaction(get_db()) as conn:
                failed = agents.interrupt_running(conn, "interrupted by restart")
                lost = settle_lost_calls(conn, config)
                conn.execute("DELETE FROM idempotency_keys WHERE state = 'executing'")
            for row in agents.waiting(get_db()):
                self.submit(row["agent_id"], row["priority"])
        if failed:
            log.warning("marked %d agents interrupted by restart as failed", len(failed))
        if lost:
            log.warning("charged %d provider calls lost in flight at their estimates", lost)
        for n in range(config["agents"]["workers"]):
            thread = threading.Thread(target=self.work, name=f"agent-worker-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, agent_id: str, priority: str) -> None:
        self.queue.put((agents.PRIORITY_RANK[priority], next(self.order), agent_id))

    def cancel(self, agent_id: str) -> None:
        """Make a running agent stop waiting on its provider (its row is already cancelled)."""
        with self.lock:
            event = self.cancels.get(agent_id)
        if event is not None:
            event.set()

    def shutdown(self) -> None:
        """Stop taking agents, wait a bounded time for running ones, fail the rest."""
        for _ in self.threads:
            self.queue.put(STOP)
        with self.app.app_context():
            grace = current_config()["agents"]["shutdown_grace_seconds"]
            deadline = time.monotonic() + grace
            for thread in self.threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self.lock:
                for event in self.cancels.values():
                    event.set()
            with transaction(get_db()) as conn:
                agents.interrupt_running(conn, "interrupted by shutdown")

    def work(self) -> None:
        while True:
            _, _, agent_id = self.queue.get()
            if agent_id is None:
                return
            event = threading.Event()
            with self.lock:
                self.cancels[agent_id] = event
            try:
                with self.app.app_context():
                    run_agent(agent_id, event)
            except Exception:
                log.exception("agent %s crashed its worker", agent_id)
            finally:
                with self.lock:
                    self.cancels.pop(agent_id, None)


def run_agent(agent_id: str, cancel: threading.Event) -> None:
    """Run every step of one agent and record the outcome."""
    conn = get_db()
    row = agents.mark_running(conn, agent_id)
    if row is None:
        return
    config = current_config()
    deadline = time.monotonic() + row["timeout"]
    steps = agents.step_plan(config, row["model"], row["team"])
    key = current_app.extensions["j1msky_data_key"]
    task = agentdata.open_if(row["encrypted"], key, row["task"])
    try:
        last = run_steps(conn, config, row, task, steps, deadline, cancel, key)
    except providers.Cancelled:
        return
    except providers.DeadlineExceeded:
        agents.finish(conn, agent_id, "failed", data_key=key,
                      error=f"Agent timed out after {row['timeout']:g} seconds")
    except providers.ProviderUnavailable as exc:
        agents.finish(conn, agent_id, "failed", error=str(exc), data_key=key)
    except Exception:
        log.exception("agent %s failed unexpectedly", agent_id)
        agents.finish(conn, agent_id, "failed", error="internal error", data_key=key)
    else:
        agents.finish(conn, agent_id, "completed", result=last.output, last_step=last,
                      data_key=key)


def run_steps(conn, config: dict, row, task: str, steps: list[dict], deadline: float,
              cancel: threading.Event, key) -> agents.Step:
    """Each step gets the task and the previous step's output. Every step but the last
    is recorded here; the last is returned, for finish to record with the outcome."""
    answered = None
    for index, step in enumerate(steps):
        if cancel.is_set():
            raise providers.Cancelled()
        prompt = task if answered is None else \
            f"Task:\n{task}\n\nPrevious step's output:\n{answered.output}"
        call = Call(row["agent_id"], index, prompt, step["role"])
        model, completion = call_with_fallback(conn, config, step["model"], call, deadline,
                                               cancel)
        answered = agents.Step(index, model, completion.text,
                               step["model"] if model != step["model"] else None,
                               completion.simulated)
        if index + 1 < len(steps) and not agents.record_step(conn, row["agent_id"], answered,
                                                             key):
            raise providers.Cancelled()
    return answered


@dataclass
class Call:
    """One step's request to a model, whichever model of the chain answers it."""
    agent_id: str
    step: int
    prompt: str
    system: str | None


def call_with_fallback(conn, config: dict, model: str, call: Call, deadline: float,
                       cancel: threading.Event):
    """Try the model, then down its fallback chain, skipping providers at their hourly
    limit; (model used, Completion)."""
    calls = config["provider_calls"]
    failures = []
    for candidate in catalog.fallback_chain(config, model):
        try:
            route = catalog.route(config, candidate)
        except APIError as exc:
            failures.append(f"{candidate}: {exc.message}")
            continue
        breaker = providers.breaker_for(route.provider_name, calls["circuit_threshold"],
                                        calls["circuit_timeout"])
        try:
            completion = providers.complete(
                route.provider, route.provider_name, route.upstream, call.prompt,
                system=call.system, max_tokens=config["agents"]["max_output_tokens"],
                deadline=deadline, cancel=cancel,
                on_call=partial(open_call, conn, config, call, candidate, route),
                retries=calls["retries"], backoff_base=calls["backoff_base"],
                backoff_max=calls["backoff_max"], breaker=None if route.simulated else breaker,
                connect_timeout=calls["connect_timeout"], read_timeout=calls["read_timeout"])
        except providers.ProviderUnavailable as exc:
            failures.append(f"{candidate}: {exc}")
            continue
        return candidate, completion
    raise providers.ProviderUnavailable("no model could answer: " + "; ".join(failures))


def open_call(conn, config: dict, call: Call, model: str, route: catalog.Route
              ) -> providers.Settle:
    """Before an attempt is sent: count it against its provider's hourly limit and
    record it in flight, in one transaction; returns what settles its cost. The
    simulator has no limit and nothing to lose, so its calls are settled at once.

    The record commits as durably as an answered write: a call the provider may bill
    must still be in flight after a power cut, to be charged at the next start."""
    provider, app = route.provider_name, current_app._get_current_object()
    if route.simulated:
        return partial(settle, app, None, call, model, provider)
    hourly = config["providers"][provider]["hourly"]
    with transaction(conn, sync=power_cut_safe(config)):
        if not limits.try_count_call(conn, provider, hourly):
            raise providers.ProviderUnavailable(f"{provider}: hourly limit of {hourly} reached")
        estimate = catalog.cost_micros(config, model,
                                       agents.estimate_tokens(call.prompt + (call.system or "")),
                                       config["agents"]["max_output_tokens"])
        call_id = ledger.open_call(conn, agent_id=call.agent_id, step=call.step, model=model,
                                   provider=provider, estimate=estimate)
    metrics.provider_call(provider)
    return partial(settle, app, call_id, call, model, provider)


def settle(app: Flask, call_id: int | None, call: Call, model: str, provider: str,
           outcome: providers.Outcome) -> None:
    """Charge one attempt what it cost: its reported usage at the model's prices, its
    estimate when the provider may have billed it without saying, else nothing. Runs
    on the thread that got the answer, whether or not the agent still waits for it."""
    with app.app_context():
        config = current_config()
        conn = get_db()
        with transaction(conn):
            if call_id is None:
                estimate, held = 0, 0
            else:
                in_flight = ledger.take(conn, call_id)
                if in_flight is None:
                    return
                estimate, held = in_flight["estimate_micros"], in_flight["held"]
            charge(conn, config, call.agent_id, call.step, model, provider, outcome,
                   estimate, estimate if held else 0)


def settle_lost_calls(conn, config: dict) -> int:
    """At start: every call still in flight lost its answer and may have been billed,
    so each is charged at its estimate (caller holds the transaction)."""
    lost = ledger.in_flight(conn)
    for in_flight in lost:
        ledger.take(conn, in_flight["id"])
        charge(conn, config, in_flight["agent_id"], in_flight["step"], in_flight["model"],
               in_flight["provider"], providers.Outcome(maybe_billed=True),
               in_flight["estimate_micros"],
               in_flight["estimate_micros"] if in_flight["held"] else 0)
    return len(lost)


def charge(conn, config: dict, agent_id: str, step: int, model: str, provider: str,
           outcome: providers.Outcome, estimate: int, held: int) -> None:
    completion = outcome.completion
    if completion is not None:
        cost = catalog.cost_micros(config, model, completion.input_tokens,
                                   completion.output_tokens)
        usage = (completion.input_tokens, completion.output_tokens)
    else:
        cost, usage = (estimate if outcome.maybe_billed else 0), (0, 0)
    if cost or completion is not None or held:
        agents.charge(conn, config, agent_id, step=step, model=model, provider=provider,
                      cost=cost, input_tokens=usage[0], output_tokens=usage[1],
                      estimated=completion is None and outcome.maybe_billed, held=held)
