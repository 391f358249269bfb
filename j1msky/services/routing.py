"""Which model to use: the task type's route, reordered by complexity and priority,
first with hourly capacity whose estimated cost fits the remaining budget."""
from __future__ import annotations

import sqlite3

from . import budget, catalog, limits


def price_per_1k(config: dict, model: str) -> float:
    spec = config["models"][model]
    return spec["input_per_1k"] + spec["output_per_1k"]


def candidates(config: dict, task_type: str, complexity: str, priority: str) -> list[str]:
    """High complexity (or high priority unless the task is simple) prefers the strongest
    (priciest) models; low complexity (or low priority unless it is hard) the cheapest;
    otherwise the configured order stands."""
    order = list(config["routing"]["task_models"][task_type])
    strongest = complexity == "high" or (priority == "high" and complexity != "low")
    cheapest = complexity == "low" or (priority == "low" and complexity != "high")
    if strongest:
        order.sort(key=lambda m: -price_per_1k(config, m))
    elif cheapest:
        order.sort(key=lambda m: price_per_1k(config, m))
    return order


def estimated_micros(config: dict, model: str, tokens: int) -> int:
    """Cost of `tokens`, counted half as input and half as output."""
    return catalog.cost_micros(config, model, tokens // 2, tokens - tokens // 2)


def recommend(conn: sqlite3.Connection, config: dict, task_type: str, complexity: str,
              priority: str, tokens: int) -> dict:
    remaining = budget.remaining_micros(conn, config)
    skipped = []
    for model in candidates(config, task_type, complexity, priority):
        cost = estimated_micros(config, model, tokens)
        if catalog.availability(config, model) == "unavailable":
            skipped.append(f"{model}: provider key not configured")
        elif not limits.has_capacity(conn, config, model):
            skipped.append(f"{model}: hourly provider limit reached")
        elif cost > remaining:
            skipped.append(f"{model}: estimated ${budget.dollars(cost)} exceeds the remaining"
                           f" ${budget.dollars(max(remaining, 0))}")
        else:
            reason = (f"first {complexity}-complexity, {priority}-priority choice for"
                      f" '{task_type}' with provider capacity and budget")
            if skipped:
                reason += " (skipped " + "; ".join(skipped) + ")"
            return {"recommended_model": model, "budget_available": True,
                    "estimated_cost": budget.dollars(cost), "reason": reason}
    return {"recommended_model": None, "budget_available": False, "estimated_cost": None,
            "reason": "no model fits: " + "; ".join(skipped)}


def default_model(conn: sqlite3.Connection, config: dict, priority: str, tokens: int) -> str:
    """The model for a spawn that names none: recommend-model for a 'general' task. When
    nothing fits, the route's first model, so admission explains the refusal (429/503)."""
    routes = config["routing"]["task_models"]
    task_type = "general" if routes.get("general") else next(
        (name for name, models in routes.items() if models), None)
    if task_type is None:
        return next(iter(config["models"]))
    choice = recommend(conn, config, task_type, "medium", priority, tokens)
    return choice["recommended_model"] or routes[task_type][0]
