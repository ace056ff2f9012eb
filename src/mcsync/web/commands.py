"""CLI subcommands for the web side (web, sync-now, verify, rotate-keys)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register this side's subcommands on the `mcsync` parser's subparsers."""
    _ = (sub, argparse)
