"""``dreamlift view``: a run folder in the browser (:mod:`dreamlift.viewer`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dreamlift.cli.common import console


def view_command(
    run: Path = typer.Argument(..., help="A run folder (generate, reconstruct, edit, ...)."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port (the next free one if busy)."),
    host: str = typer.Option("127.0.0.1", help="Interface; 0.0.0.0 to serve other machines."),
    seconds: float | None = typer.Option(
        None, min=0.0, help="Stop after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Serve RUN's 3D result in the browser: the field, the true asset beside it (world
    captions), the turntable's cameras, the metrics and the loss curve."""
    from dreamlift.viewer import view_run

    viewer = view_run(run, port=port, host=host)
    console.print(f"viewer: {viewer.url}  (Ctrl-C to stop)", highlight=False)
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()
