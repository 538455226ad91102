"""The ``dreamlift`` command line: one module per command (``world``, ``generate``,
``reconstruct``, ``handles``, ``sample``, ``zoo``, ``list``), the options they share in
``common``, and ``app`` with :func:`main`. User errors print one line and exit with code 2."""

from dreamlift.cli.app import app, main

__all__ = ["app", "main"]
