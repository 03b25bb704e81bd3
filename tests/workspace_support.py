"""The workspace a test's commands use, for tests that call the library directly.

conftest points ``COSTEFF_ARTIFACTS`` and ``COSTEFF_MODEL_REPOSITORY`` at each test's own folder;
the command line's edge (``costeff.cli._common.workspace``) turns them into the Workspace that
every command hands the library. These helpers build it the same way, so a library call in a test
and a command in the same test read and write the same folders.
"""

from __future__ import annotations

import argparse

from costeff.artifacts import Workspace
from costeff.audit import AuditLog
from costeff.cli._common import home, workspace
from costeff.flags import FlagStore
from costeff.home import Home


def env_workspace() -> Workspace:
    return workspace(argparse.Namespace())


def audit_log() -> AuditLog:
    return AuditLog.of(env_workspace())


def flag_store() -> FlagStore:
    return FlagStore.of(env_workspace())


def env_home() -> Home:
    """The signing key, anchor and cache a test's commands use (conftest points ``COSTEFF_HOME`` at its folder)."""
    return home(argparse.Namespace())
