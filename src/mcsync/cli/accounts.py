"""Commands that add or remove a user's Mailchimp connection by hand: `connect`, `disconnect`."""

from __future__ import annotations

import argparse
import sys
from uuid import UUID

import psycopg

from mcsync.cli.options import (
    DATABASE,
    MAILCHIMP,
    USER,
    Command,
    flag,
    require_cipher,
    require_database,
    settings_from,
)
from mcsync.config import Settings
from mcsync.crypto import TokenCipher
from mcsync.mailchimp.models import Audience


def cmd_connect(args: argparse.Namespace) -> int:
    """Register a user's Mailchimp connection without the browser, and queue a first full sync.

    For operators and scripts; users normally connect through `mcsync web`'s OAuth popup. The
    access token is stored encrypted with the newest key of MCSYNC_ENCRYPTION_KEYS."""
    from mcsync.connections import connect_user

    settings = settings_from(args)
    cipher = require_cipher(settings)
    try:
        api_endpoint = args.api_endpoint or settings.api_base(args.dc)
    except ValueError as exc:  # a --dc that is no Mailchimp data center
        sys.exit(f"mcsync connect: {exc}")
    audience = _read_audience(settings, args)
    with psycopg.connect(require_database(settings), autocommit=True) as conn:
        queued = connect_user(
            conn,
            cipher,
            user_id=args.user_id,
            access_token=args.access_token,
            dc=args.dc,
            api_endpoint=api_endpoint,
            account_name=args.account_name,
            audience_id=args.audience_id,
            audience_name=args.audience_name or audience.name,
            double_optin=audience.double_optin,
        )
    print(f"connected user {args.user_id}; {queued} contacts queued for a first full sync")
    _compare_with_audience(settings, cipher, args.user_id)
    return 0


def _compare_with_audience(settings: Settings, cipher: TokenCipher, user_id: UUID) -> None:
    """A reconnect (the ledger already knew this audience) started a reconciliation
    (`mcsync.connections.check_against_audience`): run it here, so the audience itself is
    compared, not only what mcsync last told it."""
    import asyncio
    import os
    import socket

    from mcsync.database import Database
    from mcsync.reconcile import run_reconciliation

    owner = f"cli-{socket.gethostname()}-{os.getpid()}"
    with Database.session(require_database(settings)) as db:
        result = asyncio.run(run_reconciliation(db, settings, cipher, user_id, owner=owner))
    if result is not None:
        print(
            f"compared with the audience itself: {result.listed} members listed, "
            f"{result.differences} differences, {result.queued} contacts queued"
        )


def _read_audience(settings: Settings, args: argparse.Namespace) -> Audience:
    """The audience as Mailchimp has it (GET /lists/{id}), as the OAuth path reads it: its
    double opt-in setting decides whether new members start pending. Also proves the token
    and the audience id before anything is stored."""
    import asyncio

    from mcsync.mailchimp.client import ClientFactory
    from mcsync.mailchimp.errors import MailchimpError

    async def read() -> Audience:
        client = ClientFactory.from_settings(settings).client(args.dc, args.access_token)
        try:
            return await client.get_audience(args.audience_id)
        finally:
            await client.aclose()

    try:
        return asyncio.run(read())
    except (MailchimpError, ValueError) as exc:
        sys.exit(f"mcsync connect: could not read audience {args.audience_id}: {exc}")


def cmd_disconnect(args: argparse.Namespace) -> int:
    """Remove a user's Mailchimp credentials and pending changes.

    The Mailchimp audience and the app's contacts are left as they are; reconnecting starts with
    a full sync."""
    from mcsync.connections import disconnect_user

    settings = settings_from(args)
    with psycopg.connect(require_database(settings), autocommit=True) as conn:
        removed = disconnect_user(conn, args.user_id)
    print(
        f"disconnected user {args.user_id}" if removed else f"user {args.user_id} had no connection"
    )
    return 0


COMMANDS = (
    Command(
        "connect",
        cmd_connect,
        "register a connection without the browser",
        settings=(*MAILCHIMP, "login_url"),
        flags=(
            USER,
            flag("--access-token", required=True, help="the user's Mailchimp OAuth token"),
            flag("--dc", required=True, help="Mailchimp data center, e.g. us1"),
            flag("--audience-id", required=True, help="the audience to mirror contacts into"),
            flag("--audience-name", help="shown in the settings widget"),
            flag("--account-name", help="shown in the settings widget"),
            flag("--api-endpoint", help="default: MAILCHIMP_API_URL with the dc filled in"),
        ),
    ),
    Command(
        "disconnect",
        cmd_disconnect,
        "remove a user's credentials and pending events",
        settings=DATABASE,
        flags=(USER,),
    ),
)
