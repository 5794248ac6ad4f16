"""`edgedistill admin`: API keys, tenants and database migrations, against the configured database.

edgedistill admin migrate
edgedistill admin create-key --tenant acme [--name ci]    # prints the key once, on stdout
edgedistill admin list-keys [--tenant acme]
edgedistill admin revoke-key edk_AbCdEfGh
edgedistill admin webhook-secret --tenant acme            # new webhook signing secret, printed once
edgedistill admin scrub                                   # re-hash every stored object; exit 1 on damage
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import make_url

from edgedistill.service.db.migrate import current_revision, upgrade_head
from edgedistill.service.db.session import dispose_engines, session_scope
from edgedistill.service.repos import api_keys, tenants, webhook_secrets
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.settings import Settings, get_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgedistill admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="upgrade the database schema to the latest migration")
    create = sub.add_parser("create-key", help="create an API key (and the tenant if it is new)")
    create.add_argument("--tenant", required=True, help="tenant name")
    create.add_argument("--name", default="default", help="a label for the key")
    revoke = sub.add_parser("revoke-key", help="revoke the key whose prefix is given")
    revoke.add_argument("prefix", help="the key's prefix as list-keys shows it (or the whole key)")
    hook = sub.add_parser("webhook-secret", help="create or rotate a tenant's webhook signing secret (printed once)")
    hook.add_argument("--tenant", required=True, help="tenant name")
    sub.add_parser("scrub", help="re-hash every stored upload and artifact and report missing or damaged ones")
    listing = sub.add_parser("list-keys", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    return p


def _shown(url: str) -> str:
    return str(make_url(url).render_as_string(hide_password=True))


def _require_schema(settings: Settings) -> bool:
    if current_revision(settings.database_url) is None:
        print(
            f"error: the database {_shown(settings.database_url)} has no schema yet; "
            "run 'edgedistill admin migrate' first",
            file=sys.stderr,
        )
        return False
    return True


def _create_key(settings: Settings, tenant_name: str, key_name: str) -> int:
    with session_scope(settings) as session:
        created = api_keys.create_key(session, tenant_name=tenant_name, name=key_name)
        prefix, secret = created.key.prefix, created.secret
    print(secret)
    print(f"created key {prefix} ({key_name!r}) for tenant {tenant_name!r}; it is shown only once", file=sys.stderr)
    return 0


def _revoke_key(settings: Settings, prefix: str) -> int:
    try:
        with session_scope(settings) as session:
            key = api_keys.revoke_key(session, prefix=prefix[:12])
    except Conflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if key is None:
        print(f"error: no live key starts with {prefix[:12]!r}", file=sys.stderr)
        return 1
    print(f"revoked key {key.prefix} ({key.name!r})")
    return 0


def _webhook_secret(settings: Settings, tenant_name: str) -> int:
    with session_scope(settings) as session:
        tenant = tenants.get_tenant_by_name(session, name=tenant_name)
        if tenant is None:
            print(f"error: no tenant named {tenant_name!r}", file=sys.stderr)
            return 1
        secret = webhook_secrets.rotate_secret(session, tenant_id=tenant.id).secret
    print(secret)
    print(
        f"new webhook secret for tenant {tenant_name!r}; it replaces the old one and is shown only once",
        file=sys.stderr,
    )
    return 0


def _scrub(settings: Settings) -> int:
    from edgedistill.service.repos.storage_refs import all_storage_refs
    from edgedistill.service.storage import get_store
    from edgedistill.service.storage.integrity import scrub

    with session_scope(settings) as session:
        refs = all_storage_refs(session)
    checked, problems = scrub(get_store(settings), refs)
    for p in problems:
        print(f"{p.problem.upper():8} {p.ref.what} {p.ref.row_id} ({p.ref.key}): {p.detail}")
    print(f"scrubbed {checked} stored objects for {len(refs)} rows: {len(problems)} problem(s)")
    if problems:
        print("a damaged object is repaired by uploading the same bytes again (or rerunning the job)", file=sys.stderr)
    return 1 if problems else 0


def _list_keys(settings: Settings, tenant_name: str | None) -> int:
    with session_scope(settings) as session:
        tenant_id = None
        if tenant_name is not None:
            tenant = tenants.get_tenant_by_name(session, name=tenant_name)
            if tenant is None:
                print(f"error: no tenant named {tenant_name!r}", file=sys.stderr)
                return 1
            tenant_id = tenant.id
        rows = api_keys.list_keys(session, tenant_id=tenant_id)
        lines = [
            (
                t.name,
                k.name,
                k.prefix,
                k.created_at.strftime("%Y-%m-%d %H:%M"),
                k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "-",
                "revoked" if k.revoked_at else "active",
            )
            for k, t in rows
        ]
    header = ("TENANT", "NAME", "PREFIX", "CREATED (UTC)", "LAST USED", "STATE")
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    for row in [header, *lines]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "migrate":
            upgrade_head(settings.database_url)
            print(f"database {_shown(settings.database_url)} is at revision {current_revision(settings.database_url)}")
            return 0
        if not _require_schema(settings):
            return 2
        if args.command == "create-key":
            return _create_key(settings, args.tenant, args.name)
        if args.command == "revoke-key":
            return _revoke_key(settings, args.prefix)
        if args.command == "webhook-secret":
            return _webhook_secret(settings, args.tenant)
        if args.command == "scrub":
            return _scrub(settings)
        return _list_keys(settings, args.tenant)
    finally:
        dispose_engines()


if __name__ == "__main__":
    raise SystemExit(main())
