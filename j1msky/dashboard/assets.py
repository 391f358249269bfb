"""Static files under content-hashed names (pico.min.3f2a9c1b04de.css), cached for a year.

A changed file gets a new name, so browsers may keep every served copy forever."""
from __future__ import annotations

import hashlib
import os

from flask import Blueprint, abort, send_from_directory, url_for

FOLDER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
SERVED = (".css", ".js", ".svg", ".png", ".ico")
YEAR = 365 * 24 * 3600

bp = Blueprint("assets", __name__)


def fingerprinted(name: str, content: bytes) -> str:
    stem, ext = os.path.splitext(name)
    return f"{stem}.{hashlib.sha256(content).hexdigest()[:12]}{ext}"


def scan(folder: str = FOLDER) -> dict[str, str]:
    """Real name -> fingerprinted name of every servable file under folder."""
    names = {}
    for root, _dirs, files in os.walk(folder):
        for file in files:
            if file.endswith(SERVED):
                path = os.path.join(root, file)
                name = os.path.relpath(path, folder).replace(os.sep, "/")
                with open(path, "rb") as fh:
                    names[name] = fingerprinted(name, fh.read())
    return names


NAMES = scan()
REAL = {served: real for real, served in NAMES.items()}


def asset_url(name: str) -> str:
    """The URL of a static file, by its real name (a template global)."""
    return url_for("dashboard.assets.static", name=NAMES[name])


@bp.get("/static/<path:name>")
def static(name: str):
    """A static file by its fingerprinted name."""
    real = REAL.get(name)
    if real is None:
        abort(404)
    response = send_from_directory(FOLDER, real, max_age=YEAR)
    response.cache_control.immutable = True
    return response
