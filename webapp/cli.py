"""Operator commands: flask db upgrade|seed, flask users create-admin|reset-password, flask credits grant,
flask keys rotate, flask logs prune, flask notify prune, flask worker."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from webapp import migrate
from webapp.repos import credits as credits_repo
from webapp.repos import users as users_repo

db_cli = AppGroup("db", help="Database migrations and seed data.")
users_cli = AppGroup("users", help="User accounts.")
credits_cli = AppGroup("credits", help="Credit balances.")
keys_cli = AppGroup("keys", help="Stored API key encryption.")
logs_cli = AppGroup("logs", help="Request log retention.")
notify_cli = AppGroup("notify", help="Notification retention.")


def _svc():  # type: ignore[no-untyped-def]
    return current_app.extensions["switchboard"]


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations from supabase/migrations."""
    with migrate.connect_admin(_svc().settings.database_admin_url) as conn:
        done = migrate.upgrade(conn)
    click.echo(f"applied {len(done)} migration(s)" + (": " + ", ".join(done) if done else ""))


@db_cli.command("seed")
def db_seed() -> None:
    """Insert the default provider presets and rates (rows an admin changed are kept)."""
    with migrate.connect_admin(_svc().settings.database_admin_url) as conn:
        migrate.seed(conn)
    click.echo("seed applied")


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--if-none", is_flag=True, help="Do nothing when an admin already exists.")
def create_admin(email: str, if_none: bool) -> None:
    """Create an admin (or promote an existing user). Prints a one-time password unless ADMIN_PASSWORD is set."""
    svc = _svc()
    with svc.db.as_service() as conn:
        if if_none and users_repo.count_admins(conn) > 0:
            click.echo("an admin already exists; nothing to do")
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        existing = users_repo.by_email(conn, email)
        if existing:
            users_repo.set_admin(conn, existing.id)
            if not os.environ.get("ADMIN_PASSWORD"):
                click.echo(f"{email} is now an admin (password unchanged)")
                return
            users_repo.set_password(conn, existing.id, password)
            click.echo(f"{email} is now an admin")
            return
        created = users_repo.create(conn, email, password, admin=True)
        if not os.environ.get("ADMIN_PASSWORD"):
            users_repo.require_password_change(conn, created.id)
    if os.environ.get("ADMIN_PASSWORD"):
        click.echo(f"admin {email} created with the password from ADMIN_PASSWORD")
    else:
        click.echo(f"admin {email} created; one-time password: {password}")
        click.echo("sign in with it: you are asked to choose your own password (Settings → Security) until you do;"
                   " it is not stored anywhere in clear")


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--base-url", default=lambda: os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000"),
              show_default="PUBLIC_URL or http://127.0.0.1:8000", help="Where users open Switchboard.")
def reset_password(email: str, base_url: str) -> None:
    """Print a one-time link that lets EMAIL choose a new password (local sign-in backend): valid for one hour,
    once; making a new link ends the older ones. Audited. The link is printed here and stored nowhere."""
    from webapp.services import account_security

    svc = _svc()
    if svc.settings.auth_backend != "local":
        raise click.ClickException("reset links are for AUTH_BACKEND=local; with Supabase, the user asks for a"
                                   " recovery email on the sign-in page (Forgot password?)")
    link = account_security.create_reset_link_by_operator(svc.db, svc.settings, email)
    if link is None:
        raise click.ClickException(f"no user {email}")
    url = base_url.rstrip("/") + "/reset-password?" + urlencode({"token": link.token})
    until = link.expires_at.astimezone(UTC)
    click.echo(f"password reset link for {link.email} (valid until {until:%Y-%m-%d %H:%M} UTC, once):")
    click.echo(url)


@credits_cli.command("grant")
@click.argument("email")
@click.argument("credits", type=float)
@click.option("--reason", default="operator grant")
def credits_grant(email: str, credits: float, reason: str) -> None:
    """Grant (or, negative, deduct) CREDITS to EMAIL through the ledger."""
    micro = round(credits * 1_000_000)
    with _svc().db.as_service() as conn:
        user = users_repo.by_email(conn, email)
        if user is None:
            raise click.ClickException(f"no user {email}")
        balance = credits_repo.adjust(conn, user.id, micro, reason, None)
    click.echo(f"{email}: balance {balance / 1_000_000:.6f} credits")


@credits_cli.command("sweep")
@click.option("--older-than", default=3600, show_default=True, help="Seconds a reservation may stay open.")
def credits_sweep(older_than: int) -> None:
    """Refund reservations left open by a worker that died mid-request (run from cron)."""
    from webapp.services import credits as credits_service

    count = credits_service.sweep(_svc().db, older_than)
    click.echo(f"refunded {count} stale reservation(s)")


@keys_cli.command("rotate")
@click.option("--dry-run", is_flag=True, help="Decrypt and count, change nothing.")
def keys_rotate(dry_run: bool) -> None:
    """Re-encrypt every stored API key (admin and BYOK) with the active encryption key, the first of
    ENCRYPTION_KEYS. Keys that cannot be decrypted are listed and left as they are; the exit status is then 1.
    Once it reports no unreadable key, older encryption keys can be removed from ENCRYPTION_KEYS."""
    from webapp.services import admin_keyring

    svc = _svc()
    report = admin_keyring.reencrypt_all(svc.db, svc.keyring, dry_run=dry_run)
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    click.echo(f"{verb} {report.rotated} key(s) with encryption key {report.active_kid!r};"
               f" {report.current} already used it")
    for bad in report.failed:
        click.echo(f"cannot decrypt {bad.table} {bad.id}: {bad.reason}", err=True)
    if report.failed:
        click.echo(f"{len(report.failed)} key(s) could not be decrypted; keep the encryption keys they need, or"
                   " have their owners save them again", err=True)
        raise SystemExit(1)


@click.command("worker")
def worker() -> None:
    """Run the notification worker (email and webhook deliveries from the event outbox) until stopped."""
    from webapp.notify import worker as notify_worker

    notify_worker.main(_svc().settings)


@logs_cli.command("prune")
@click.option("--months", type=click.IntRange(0), default=None,
              help="Keep the current month and this many before it (default: LOG_RETENTION_MONTHS; 0 keeps all).")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Rows deleted per transaction.")
def logs_prune(months: int | None, batch: int) -> None:
    """Delete request-log rows older than the retention (whole months). The ledger, reservations and usage
    rollups are never touched: usage charts and totals keep every month."""
    keep = _svc().settings.log_retention_months if months is None else months
    if keep == 0:
        click.echo("LOG_RETENTION_MONTHS is 0: keeping every request log row")
        return
    total = 0
    with migrate.connect_admin(_svc().settings.database_admin_url) as conn:
        while True:
            with conn.transaction():
                row = conn.execute("select public.request_logs_prune(%s, %s)", [keep, batch]).fetchone()
            deleted = int(row[0]) if row else 0
            total += deleted
            if deleted < batch:
                break
    click.echo(f"deleted {total} request log row(s) older than {keep} month(s) before this one")


@notify_cli.command("prune")
@click.option("--days", type=click.IntRange(0), default=None,
              help="Keep this many days (default: NOTIFY_RETENTION_DAYS; 0 keeps all).")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=5_000, show_default=True,
              help="Rows of each kind deleted per transaction.")
def notify_prune(days: int | None, batch: int) -> None:
    """Delete finished notification events (with their email delivery rows), finished webhook deliveries (with
    their attempts) and finished queue jobs older than the retention. Nothing pending or retrying is touched."""
    from webapp.notify import retention

    keep = _svc().settings.notify_retention_days if days is None else days
    if keep == 0:
        click.echo("NOTIFY_RETENTION_DAYS is 0: keeping every notification row")
        return
    with migrate.connect_admin(_svc().settings.database_admin_url) as conn:

        @contextlib.contextmanager
        def transaction() -> Iterator[Any]:
            with conn.transaction():
                yield conn

        pruned = retention.prune(transaction, keep, batch)
    click.echo(f"deleted {pruned} older than {keep} day(s)")


def init_app(app: Flask) -> None:
    for group in (db_cli, users_cli, credits_cli, keys_cli, logs_cli, notify_cli):
        app.cli.add_command(group)
    app.cli.add_command(worker)
