"""/security: the IP allow list (in config.json) and blocked addresses (admin:write)."""
from __future__ import annotations

from flask import Blueprint, current_app

from .. import ipguard
from ..auth import require_scope
from ..config import ConfigError, defaults, merge
from ..config import current as current_config
from ..db import get_db
from ..errors import APIError
from ..security_schemas import BlockIPRequest, IPWhitelistRequest
from ..services import clock
from .audit import record_request
from .common import json_body

bp = Blueprint("security", __name__)

WHITELIST_FIELDS = ("allowed_ips", "enforce", "log_violations", "trusted_proxies")


def whitelist_view(security: dict) -> dict:
    return {name: security[name] for name in WHITELIST_FIELDS}


def block_view(row) -> dict:
    return {"ip": row["ip"], "reason": row["reason"], "source": row["source"],
            "created_at": clock.iso_out(row["created_at"]),
            "expires_at": clock.iso_out(row["expires_at"])}


@bp.get("/security/ip-whitelist")
@require_scope("admin:write")
def get_whitelist():
    """The allow list and its switches, as config.json holds them."""
    return whitelist_view(current_config()["security"])


@bp.put("/security/ip-whitelist")
@require_scope("admin:write")
def put_whitelist():
    """Replace the fields sent in config.json's security section (atomic write)."""
    return {"success": True, **change_whitelist(IPWhitelistRequest().load(json_body()))}


def change_whitelist(req: dict) -> dict:
    """Write the allow-list fields in req to config.json and audit the change; the
    settings now in force. Refused with 409, leaving the file untouched, when the result
    would refuse the caller's own address (the console's editor calls this too)."""
    def change(user: dict) -> None:
        if not isinstance(user, dict):
            raise ConfigError("config.json must hold a JSON object")
        settings = {**merge(defaults(), user)["security"], **req}
        locked_out = ipguard.locks_out_caller(settings)
        if locked_out:
            raise APIError(409, f"Refusing to lock you out: your address {locked_out} is not"
                                " in allowed_ips; add it, or send enforce: false",
                           your_ip=locked_out)
        user["security"] = {**user.get("security", {}), **req}

    before = whitelist_view(current_config()["security"])
    try:
        config = current_app.extensions["j1msky_config"].update(change)
    except (ConfigError, ValueError) as exc:
        raise APIError(409, f"config.json cannot be updated until it is fixed: {exc}") from None
    after = whitelist_view(config["security"])
    record_request("config.change", severity="warning", config=config, details={
        "section": "security", "changes": {k: {"old": before[k], "new": after[k]}
                                           for k in after if before[k] != after[k]}})
    return after


@bp.post("/security/block-ip")
@require_scope("admin:write")
def block_ip():
    """Refuse every request from an address, for duration_hours or until unblocked."""
    return {"success": True, **block_address(BlockIPRequest().load(json_body()))}, 201


def block_address(req: dict) -> dict:
    """Block req's address (never the caller's own); the block as the API shows it."""
    if req["ip"] == ipguard.client_ip():
        raise APIError(409, "Refusing to block your own address", your_ip=req["ip"])
    return block_view(ipguard.block(get_db(), req["ip"], req["reason"], "manual",
                                    req["duration_hours"]))


@bp.get("/security/blocked-ips")
@require_scope("admin:write")
def blocked_ips():
    """The blocks in force."""
    data = [block_view(row) for row in ipguard.active_blocks(get_db())]
    return {"data": data, "count": len(data)}


@bp.delete("/security/blocked-ips/<ip>")
@require_scope("admin:write")
def unblock_ip(ip: str):
    """Lift a block."""
    return {"success": True, "message": "IP unblocked", "ip": unblock_address(ip)}


def unblock_address(ip: str) -> str:
    """Lift the block on ip (400 if not an address, 404 if not blocked); the address."""
    address = ipguard.parse_ip(ip)
    if address is None:
        raise APIError(400, f"'{ip}' is not an IP address",
                       details={"ip": [f"'{ip}' is not an IP address"]})
    if not ipguard.unblock(get_db(), str(address)):
        raise APIError(404, f"IP {address} is not blocked")
    return str(address)
