"""/agents: the list, an agent's page, and spawn, team, cancel, run again and erase.

Every action runs the API's own admission, cancel and erase code (api/agents.py,
api/teams.py), so limits, budget checks and the audit log are the same."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from .. import ratelimit
from ..api.agents import AGENT_FIELDS, SHORTHANDS, admit, cancel_agent, erase_agent, prepare
from ..api.common import data_key
from ..api.teams import servable_steps
from ..config import current as current_config
from ..db import get_db
from ..errors import APIError
from ..schemas import PRIORITIES, RecommendRequest, SpawnRequest, TeamSpawnRequest
from ..services import agentdata, agents, routing
from ..services.pagination import build_page, parse_list_args
from .common import field_errors, needs

bp = Blueprint("agents", __name__)
STATUSES = ("spawning", "running", "completed", "failed", "cancelled")
SORTS = {"-created_at": "Newest first", "created_at": "Oldest first",
         "-cost": "Most expensive", "cost": "Cheapest"}
RECOMMEND = "recommend"
PRIVACY_BOXES = ("detect_pii", "mask_pii_in_logs", "encrypt_output")


@bp.get("/agents")
@needs("agents:read")
def index():
    """Agents with filters, sorting and cursor pages (the API's list query)."""
    args = {k: v for k, v in request.args.items() if v}
    query = parse_list_args(args, AGENT_FIELDS, shorthands=SHORTHANDS)
    rows = get_db().execute(*query.page_sql("agents")).fetchall()
    page, pagination, _links = build_page(rows, query, total=None, base_path=request.path,
                                          args=args)
    next_cursor = pagination.get("next_cursor") or pagination.get("cursor")
    config = current_config()
    return render_template(
        "agents.html", agents=[agents.to_api(r, data_key()) for r in page], args=args,
        statuses=STATUSES, models=list(config["models"]), teams=list(config["teams"]),
        sorts=SORTS, first_args={k: v for k, v in args.items() if k != "cursor"},
        next_args={**args, "cursor": next_cursor} if next_cursor else None)


def form_context(**extra) -> dict:
    config = current_config()
    return {"models": list(config["models"]), "teams": list(config["teams"]),
            "task_types": list(config["routing"]["task_models"]), "priorities": PRIORITIES,
            "complexities": RecommendRequest(config).fields["complexity"].validate.choices,
            "max_timeout": config["agents"]["max_timeout"], "form": request.form,
            "errors": {}, **extra}


def recommendation(config: dict, form) -> dict:
    """routing.recommend for the form's task (as the API's recommend-model answers)."""
    task = form.get("task", "")
    tokens = agents.estimate_tokens(task) + config["agents"]["max_output_tokens"]
    req = RecommendRequest(config).load({
        "task_type": form.get("task_type", ""), "complexity": form.get("complexity", "medium"),
        "priority": form.get("priority", "normal"), "estimated_tokens": min(tokens, 1_000_000)})
    return routing.recommend(get_db(), config, req["task_type"], req["complexity"],
                             req["priority"], req["estimated_tokens"])


def spawn_body(form, model: str | None = None) -> dict:
    """The JSON body the API would get for this form."""
    body = {"task": form.get("task", ""), "priority": form.get("priority", "normal")}
    if form.get("timeout"):
        body["timeout"] = int(form["timeout"]) if form["timeout"].isdigit() else form["timeout"]
    privacy = {name: True for name in PRIVACY_BOXES if form.get(name)}
    if privacy:
        body["privacy"] = privacy
    if model:
        body["model"] = model
    return body


def admit_and_show(config: dict, req: dict):
    (row,) = admit(config, [req])
    flash(f"Spawned {row['agent_id']}.")
    return redirect(url_for(".detail", agent_id=row["agent_id"]))


@bp.get("/agents/new")
@needs("agents:write")
def new():
    """The spawn form (one agent, or a team)."""
    return render_template("agent_new.html", **form_context())


@bp.post("/agents/recommend")
@needs("agents:read")
def recommend():
    """The model the spawn form's 'recommend' would pick, its reason and estimated cost."""
    config = current_config()
    try:
        choice = recommendation(config, request.form)
    except ValidationError as exc:
        return render_template("partials/recommendation.html", errors=field_errors(exc)), 400
    return render_template("partials/recommendation.html", choice=choice, errors={})


@bp.post("/agents/new")
@ratelimit.spawn
@needs("agents:write")
def spawn():
    """Spawn one agent from the form; 'recommend' shows the choice before spawning."""
    config = current_config()
    form = request.form
    choice = None
    try:
        if form.get("model") == RECOMMEND:
            choice = recommendation(config, form)
            if form.get("action") == RECOMMEND or not choice["recommended_model"]:
                return render_template("agent_new.html", **form_context(choice=choice))
        model = choice["recommended_model"] if choice else form.get("model") or None
        req = prepare(config, SpawnRequest(config).load(spawn_body(form, model)))
        return admit_and_show(config, req)
    except ValidationError as exc:
        return render_template("agent_new.html", **form_context(errors=field_errors(exc))), 400
    except APIError as exc:
        return render_template("agent_new.html",
                               **form_context(errors={"_form": exc.message})), exc.status


@bp.post("/agents/team")
@ratelimit.spawn
@needs("agents:write")
def spawn_team():
    """Spawn a configured team from the form."""
    config = current_config()
    body = {**spawn_body(request.form), "team": request.form.get("team", "")}
    try:
        req = TeamSpawnRequest(config).load(body)
        servable_steps(config, req["team"])
        return admit_and_show(config, req)
    except ValidationError as exc:
        return render_template("agent_new.html",
                               **form_context(team_errors=field_errors(exc))), 400
    except APIError as exc:
        return render_template("agent_new.html",
                               **form_context(team_errors={"_form": exc.message})), exc.status


def agent_view(agent_id: str) -> dict:
    return agents.to_api(agents.get(get_db(), agent_id), data_key())


@bp.get("/agents/<agent_id>")
@needs("agents:read")
def detail(agent_id: str):
    """An agent: task, result, steps, costs, timings, badges and actions."""
    return render_template("agent.html", agent=agent_view(agent_id),
                           active=agents.ACTIVE)


@bp.get("/live/agents/<agent_id>")
@needs("agents:read")
def live(agent_id: str):
    """The agent's body, which app.js swaps in until the agent finishes."""
    return render_template("partials/agent_body.html", agent=agent_view(agent_id),
                           active=agents.ACTIVE)


@bp.route("/agents/<agent_id>/cancel", methods=["GET", "POST"])
@needs("agents:write")
def cancel(agent_id: str):
    """Confirm, then cancel a waiting or running agent."""
    if request.method == "GET":
        return render_template("confirm.html", agent=agent_view(agent_id), action="cancel")
    refund = cancel_agent(agent_id)["refund"]
    flash(f"Cancelled {agent_id}; ${refund:.4f} of its reservation returned.")
    return redirect(url_for(".detail", agent_id=agent_id))


@bp.route("/agents/<agent_id>/erase", methods=["GET", "POST"])
@needs("agents:write")
def erase(agent_id: str):
    """Confirm, then erase a finished agent's task and result (its cost record stays)."""
    if request.method == "GET":
        return render_template("confirm.html", agent=agent_view(agent_id), action="erase")
    erase_agent(agent_id)
    flash(f"Erased the task and result of {agent_id}.")
    return redirect(url_for(".detail", agent_id=agent_id))


@bp.post("/agents/<agent_id>/again")
@ratelimit.spawn
@needs("agents:write")
def again(agent_id: str):
    """A new agent with the same task, model or team, priority, timeout and privacy."""
    config = current_config()
    row = agents.get(get_db(), agent_id)
    task = agentdata.readable(row, data_key())["task"]
    if row["erased_at"] or task is None:
        raise APIError(409, "This agent's task was erased, so it cannot be run again")
    body = {"task": task, "priority": row["priority"], "timeout": agents.seconds(row["timeout"])}
    if row["privacy"]:
        body["privacy"] = agents.options_of(row)
    if row["team"]:
        req = TeamSpawnRequest(config).load({**body, "team": row["team"]})
        servable_steps(config, req["team"])
    else:
        req = prepare(config, SpawnRequest(config).load({**body, "model": row["model"]}))
    return admit_and_show(config, req)
