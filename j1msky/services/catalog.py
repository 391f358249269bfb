"""Models and providers as configured: which are live, simulated or unavailable; prices."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import APIError


@dataclass(frozen=True)
class Route:
    """How one model alias is served right now."""
    model: str
    provider_name: str
    provider: dict          # config with the resolved "api_key"; kind "simulated" when simulated
    upstream: str
    simulated: bool


def availability(config: dict, model: str, environ: Mapping[str, str] = os.environ) -> str:
    """live | simulated | unavailable."""
    provider = config["providers"][config["models"][model]["provider"]]
    if provider["kind"] == "simulated":
        return "simulated"
    if environ.get(provider.get("api_key_env") or ""):
        return "live"
    return "simulated" if config["simulate_missing_providers"] else "unavailable"


def route(config: dict, model: str, environ: Mapping[str, str] = os.environ) -> Route:
    """Resolve a model alias to its provider call settings, or 503 naming the variable."""
    spec = config["models"][model]
    provider_name = spec["provider"]
    provider = dict(config["providers"][provider_name])
    state = availability(config, model, environ)
    if state == "unavailable":
        raise APIError(503, f"Model '{model}' is unavailable: set {provider.get('api_key_env')}"
                            " or enable simulate_missing_providers", retry_after=60)
    if state == "simulated":
        provider = {"kind": "simulated",
                    "delay": provider.get("delay", config["provider_calls"]["simulated_delay"])}
    else:
        provider["api_key"] = environ[provider["api_key_env"]]
    return Route(model, provider_name, provider, spec["upstream"], state == "simulated")


def fallback_chain(config: dict, model: str) -> list[str]:
    """The model, then its fallbacks in order, each once."""
    chain = []
    while model and model not in chain:
        chain.append(model)
        model = config["models"][model].get("fallback")
    return chain


def cost_micros(config: dict, model: str, input_tokens: int, output_tokens: int) -> int:
    """Price of a call in micro-dollars, from per-1K prices."""
    spec = config["models"][model]
    dollars = (input_tokens * spec["input_per_1k"] + output_tokens * spec["output_per_1k"]) / 1000
    return round(dollars * 1_000_000)


def upstream_name(config: dict, model: str) -> str:
    """'provider/upstream-model', as spawn-team lists them."""
    spec = config["models"][model]
    return f"{spec['provider']}/{spec['upstream']}"


def missing_key_variables(config: dict, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Environment variables whose absence makes a model simulated or unavailable."""
    names = {config["providers"][spec["provider"]].get("api_key_env")
             for model, spec in config["models"].items()
             if availability(config, model, environ) != "live"
             and config["providers"][spec["provider"]]["kind"] != "simulated"}
    return sorted(n for n in names if n)


def servable(config: dict, model: str) -> bool:
    """Some model in the fallback chain can be called (live or simulated)."""
    return any(availability(config, m) != "unavailable" for m in fallback_chain(config, model))


def check_servable(config: dict, model: str) -> None:
    if not servable(config, model):
        route(config, model)  # raises the 503 that names the missing variable

