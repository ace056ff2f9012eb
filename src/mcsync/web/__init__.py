"""The web side: OAuth, status, audiences, Sync Now, disconnect, and the settings widget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mcsync.config import Settings

__all__ = ["create_app"]


def create_app(settings: Settings, **kwargs: Any) -> FastAPI:
    # Imported here so `mcsync --help` and the worker don't pay for FastAPI.
    from mcsync.web.app import create_app as _create_app

    return _create_app(settings, **kwargs)
