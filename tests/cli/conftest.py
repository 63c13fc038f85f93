"""The ``esb`` command group as the entry point registers it, for CliRunner."""

from __future__ import annotations

import click
import pytest


@pytest.fixture(scope="session")
def cli() -> click.Group:
    from esb.cli.main import with_commands

    return with_commands()
