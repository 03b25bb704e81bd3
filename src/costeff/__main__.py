"""``python -m costeff``: the same entry point as the ``costeff`` script."""

from costeff.cli import entrypoint

entrypoint()
