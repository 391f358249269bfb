"""The j1msky command: init, keys, blocks, login-link, serve, purge, backup (built on Flask's CLI)."""
from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import sys
import tempfile

import click
from flask import current_app
from flask.cli import FlaskGroup

from . import create_app, instance_folder, ipguard, scheduler
from .config import ConfigError, example_text, load_file
from .db import get_db, transaction
from .services import catalog, clock, keys, sessions

log = logging.getLogger("j1msky")


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False,
             add_version_option=False)
def cli():
    """J1MSKY: self-hosted agent orchestration API."""


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@cli.command(with_appcontext=False)
def init():
    """Create the instance folder, config.json (from the example) and the database."""
    folder = instance_folder()
    os.makedirs(folder, exist_ok=True)
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        with open(config_path, "w", encoding="utf-8") as fh:
            fh.write(example_text())
        click.echo(f"Wrote {config_path}")
    try:
        app = create_app()
    except ConfigError as exc:
        fail(str(exc))
    click.echo(f"Database ready at {app.config['DATABASE']}")
    with app.app_context():
        if not keys.list_keys(get_db()):
            first = create_first_key(app)
            click.echo(f"First admin key (all scopes), shown once: {first['key']}")


def create_first_key(app) -> dict:
    with transaction(get_db()) as conn:
        return keys.create_key(conn, env=app.extensions["j1msky_config"].get()["environment"],
                               name="owner", scopes=list(keys.SCOPES),
                               master=app.extensions["j1msky_master"])


@cli.group("keys")
def keys_group():
    """Create, list, revoke and rotate API keys."""


@keys_group.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(keys.SCOPES), help="Repeat for several scopes.")
@click.option("--signing", is_flag=True, help="Also issue an api_secret for request signing.")
@click.option("--require-signature", is_flag=True, help="Refuse unsigned requests with this key.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Agents this key may have in flight (default from config).")
@click.option("--expires-days", type=click.IntRange(min=1, max=3650), default=None,
              help="The key stops working this many days from now (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print {key_id, key, api_secret}.")
def keys_create(name, scopes, signing, require_signature, max_concurrent, expires_days,
                as_json):
    """Create a key; it is printed once and stored only as a hash."""
    env = current_app.extensions["j1msky_config"].get()["environment"]
    with transaction(get_db()) as conn:
        created = keys.create_key(conn, env=env, name=name, scopes=list(scopes),
                                  master=current_app.extensions["j1msky_master"],
                                  signing=signing, require_signature=require_signature,
                                  max_concurrent=max_concurrent,
                                  expires_in_days=expires_days)
    if as_json:
        click.echo(json.dumps({k: created[k] for k in ("key_id", "key", "api_secret")}))
        return
    click.echo(f"key_id:     {created['key_id']}")
    click.echo(f"key:        {created['key']}")
    if created["api_secret"]:
        click.echo(f"api_secret: {created['api_secret']}")
    click.echo("Store these now: they are not shown again.")


@keys_group.command("list")
def keys_list():
    """List keys (never their values)."""
    for key in keys.list_keys(get_db()):
        click.echo(f"{key['key_id']}  {key['status']:8}  {key['prefix']}…  "
                   f"{' '.join(key['scopes'])}  {key['name']}")


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--reason", default=None)
def keys_revoke(key_id, reason):
    """Revoke a key at once."""
    with transaction(get_db()) as conn:
        run_key_op(lambda: keys.revoke_key(conn, key_id, reason))
    click.echo(f"Revoked {key_id}")


@keys_group.command("rotate")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(key_id, as_json):
    """Issue a replacement key; the old one expires after the grace period."""
    settings = current_app.extensions["j1msky_config"].get()
    with transaction(get_db()) as conn:
        rotated = run_key_op(lambda: keys.rotate_key(
            conn, key_id, env=settings["environment"],
            master=current_app.extensions["j1msky_master"],
            grace_hours=settings["security"]["rotation_grace_hours"]))
    if as_json:
        click.echo(json.dumps({k: rotated[k] for k in ("key_id", "key", "api_secret")}))
        return
    click.echo(f"key_id:     {rotated['key_id']}\nkey:        {rotated['key']}")
    if rotated["api_secret"]:
        click.echo(f"api_secret: {rotated['api_secret']}")
    click.echo(f"{key_id} keeps working until {rotated['old_key_expires_at']}.")


@cli.command("login-link")
@click.option("--key-id", default=None,
              help="Sign in as this key (default: the oldest active admin key).")
def login_link(key_id):
    """Print a single-use console sign-in URL, valid for 10 minutes."""
    with transaction(get_db()) as conn:
        key = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone() \
            if key_id else sessions.owner_key(conn)
        if not sessions.key_usable(key):
            fail(f"key {key_id} cannot sign in (unknown, revoked, expired or suspended)"
                 if key_id else "no active admin key: create one with `j1msky keys create`")
        token = sessions.create_link(conn, key["id"])
    server = current_app.extensions["j1msky_config"].get()["server"]
    host = server["host"] if server["host"] not in ("0.0.0.0", "::", "") else socket.gethostname()
    click.echo(f"http://{host}:{server['port']}/login/link/{token}")
    click.echo(f"Open it within {sessions.LINK_MINUTES} minutes; it works once"
               f" (signs in as {key['name']}, {key['prefix']}…).", err=True)


@cli.group("blocks")
def blocks_group():
    """List and lift blocked addresses (the running service sees a change within a second)."""


@blocks_group.command("list")
def blocks_list():
    """The blocks in force: address, source (manual|auth_failures), end, reason."""
    for row in ipguard.active_blocks(get_db()):
        until = clock.iso_out(row["expires_at"]) or "until removed"
        click.echo(f"{row['ip']}  {row['source']}  {until}  {row['reason']}")


@blocks_group.command("remove")
@click.argument("ip")
def blocks_remove(ip):
    """Lift the block on IP, whatever made it."""
    address = ipguard.parse_ip(ip)
    if address is None:
        fail(f"'{ip}' is not an IP address")
    if not ipguard.unblock(get_db(), str(address)):
        fail(f"{address} is not blocked")
    click.echo(f"Unblocked {address}")


def run_key_op(op):
    from .errors import APIError
    try:
        return op()
    except APIError as exc:
        fail(exc.message)


@cli.command(with_appcontext=False)
@click.option("--host", default=None, help="Address to bind (config server.host).")
@click.option("--port", type=int, default=None, help="Port (config server.port).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Request threads (config server.threads).")
@click.option("--workers", type=int, default=1, help="Must be 1: agents live in one process.")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False),
              help="TLS certificate (PEM): serve HTTPS, TLS 1.3 at least.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False),
              help="TLS private key (PEM), with --certfile.")
def serve(host, port, threads, workers, certfile, keyfile):
    """Serve the API with gunicorn: one worker process, N threads."""
    if bool(certfile) != bool(keyfile):
        fail("--certfile and --keyfile go together")
    if workers != 1:
        fail("j1msky serve runs exactly one worker: the agent pool and scheduler live in it."
             " Use --threads for concurrency.")
    try:
        config = load_file(os.path.join(instance_folder(), "config.json"))
    except ConfigError as exc:
        fail(str(exc))
    warn_simulated(config)
    from .server import run
    server = config["server"]
    shown = host or server["host"]
    shown = socket.gethostname() if shown in ("0.0.0.0", "::", "") else shown
    click.echo(f"Console: open {'https' if certfile else 'http'}://{shown}:{port or server['port']}/"
               " in a browser (sign in with an API key, or `j1msky login-link`).", err=True)
    run(host or server["host"], port or server["port"], threads or server["threads"],
        tls=(certfile, keyfile) if certfile else None, access_log=server["access_log"])


def warn_simulated(config: dict) -> None:
    simulated = [m for m in config["models"] if catalog.availability(config, m) == "simulated"]
    if simulated:
        missing = catalog.missing_key_variables(config)
        hint = f" Set {', '.join(missing)} to use the real providers." if missing else ""
        click.echo(f"Warning: models {', '.join(simulated)} are served by the built-in simulator"
                   f" (answers say \"simulated\": true).{hint}", err=True)


@cli.command()
def purge():
    """Run the retention jobs once (what the daily job does)."""
    removed = scheduler.run_retention()
    for name, count in removed.items():
        click.echo(f"{name}: {'failed' if count is None else f'{count} removed'}")
    failed = [name for name, count in removed.items() if count is None]
    if failed:
        fail(f"retention failed for {', '.join(failed)} (see the log)")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, resolve_path=True))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def backup(path, force):
    """Copy the database to PATH while the service runs, and integrity-check the copy.

    SQLite's online backup copies one consistent snapshot; the service keeps serving and
    writing meanwhile. master.key and data.key in the instance folder are not in the
    database: keep copies of them too, or signed keys and encrypted outputs are lost.
    """
    database = current_app.config["DATABASE"]
    if os.path.exists(path) and os.path.samefile(path, database):
        fail(f"{path} is the live database")
    if os.path.exists(path) and not force:
        fail(f"{path} already exists (--force overwrites it)")
    if not os.path.isdir(os.path.dirname(path)):
        fail(f"no such folder: {os.path.dirname(path)}")
    size = backup_database(get_db(), path)
    click.echo(f"Backed up {database} to {path}: {size} bytes, integrity_check ok")


def backup_database(source: sqlite3.Connection, path: str) -> int:
    """Back source up into a private temp file beside path, check it, then rename it over
    path, so a failed backup never leaves a partial file; returns the size in bytes."""
    fd, temp = tempfile.mkstemp(prefix=".j1msky-backup-", suffix=".sqlite3",
                                dir=os.path.dirname(path))  # 0600: key hashes, agent data
    os.close(fd)
    try:
        copy = sqlite3.connect(temp)
        try:
            source.backup(copy)  # all pages in one step: one read snapshot, writers carry on
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
        finally:
            copy.close()
        if problems != ["ok"]:
            fail("integrity_check of the copy failed: " + "; ".join(problems[:5]))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return os.path.getsize(path)


def main() -> None:
    try:
        cli.main(prog_name="j1msky")
    except ConfigError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
