"""The browser viewer (viser): ``dreamlift view RUN`` and training commands' ``--viewer``.

viser is an optional dependency (``pip install 'dreamlift[viewer]'``); without it the viewer
commands say so in one line.
"""

from dreamlift.viewer.run_view import view_run
from dreamlift.viewer.server import LiveView, RunViewer, live_viewer

__all__ = ["LiveView", "RunViewer", "live_viewer", "view_run"]
