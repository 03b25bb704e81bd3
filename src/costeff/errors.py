"""One small exception hierarchy; the CLI maps it to exit codes in one place."""

from __future__ import annotations


class CosteffError(Exception):
    """Base class of every error costeff raises on purpose."""

    exit_code = 3


class InputError(CosteffError):
    """Bad input or configuration: a file, a field or a value the user can fix (exit 2)."""

    exit_code = 2


class DependencyError(CosteffError):
    """A dependency failed at run time: a server is down, an execution provider broke (exit 3)."""

    exit_code = 3


class NoCredentials(DependencyError):
    """No credentials for a service at all (not a refusal): a dry run may go on without reading it."""


class GateFailed(CosteffError):
    """A gate said no (exit 1). Raised only where a verb cannot return a record instead."""

    exit_code = 1
