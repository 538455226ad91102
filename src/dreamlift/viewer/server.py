"""A viser server that shows one run: the result, the world's true asset beside it (world
captions), the turntable's cameras, the run's metrics and its loss curve.

``RunViewer`` is used twice: by ``dreamlift view RUN`` for a finished (or stopped) run, and
live by a training command's ``--viewer`` through :class:`LiveView`, which redraws the field
at the loop's logged steps no more often than its budget allows (the viewer's share of the
wall time stays under :data:`LIVE_SHARE`).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dreamlift.cameras import Cameras
from dreamlift.errors import DreamliftError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.viewer.scene import ColouredMesh, asset_mesh, field_mesh, gaussian_splats
from dreamlift.world.assets import Asset

TRUTH_OFFSET = (0.0, 1.6, 0.0)
"""Where the true asset stands: to the result's right as seen from the front (azimuth 0)."""
LIVE_SHARE = 0.05
"""The most of a training run's wall time a live view may take (the issue's bar is 10 %)."""


def require_viser() -> Any:
    """The viser module, or a one-line error saying how to install it."""
    try:
        import viser
    except ImportError:
        raise DreamliftError(
            "the viewer needs viser, which is not installed",
            "pip install 'dreamlift[viewer]'",
        ) from None
    return viser


class RunViewer:
    """A viser server at ``host:port`` (a busy port moves to the next free one)."""

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", title: str = "dreamlift"):
        viser = require_viser()
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner of its own
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.gui.configure_theme(control_layout="collapsible", show_share_button=False)
        self.title = self.server.gui.add_markdown(f"**{title}**")
        self.metrics = self.server.gui.add_markdown("")
        self.loss_plot: Any = None
        cam = self.server.initial_camera
        cam.position, cam.look_at, cam.up = (4.2, 0.8, 1.5), (0.0, 0.8, 0.0), (0.0, 0.0, 1.0)

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    # ------------------------------------------------------------------ scene
    def show_field(self, fld: Field, name: str = "/result", mesh_resolution: int = 64) -> None:
        """Gaussians as splats; any other field as its density's mesh."""
        if isinstance(fld, GaussianField):
            s = gaussian_splats(fld)
            self.server.scene.add_gaussian_splats(
                name,
                centers=s.centers,
                covariances=s.covariances,
                rgbs=s.rgbs,
                opacities=s.opacities,
            )
            return
        mesh = field_mesh(fld, mesh_resolution)
        if mesh is not None:
            self._add_mesh(name, mesh)

    def show_truth(self, asset: Asset) -> None:
        self._add_mesh("/truth", asset_mesh(asset), position=TRUTH_OFFSET)
        self.server.scene.add_label("/truth/label", "truth", position=(0.0, 0.0, 0.9))
        self.server.scene.add_label("/result_label", "result", position=(0.0, 0.0, 0.9))

    def _add_mesh(
        self, name: str, mesh: ColouredMesh, position: tuple[float, float, float] = (0, 0, 0)
    ) -> None:
        import trimesh

        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=mesh.colours, process=False)
        self.server.scene.add_mesh_trimesh(name, tm, position=position)

    def show_cameras(self, cameras: Cameras, every: int = 6) -> None:
        """Every ``every``-th camera as a frustum (OpenCV camera-to-world poses)."""
        c2w = cameras.c2w.detach().cpu().numpy()
        fov = float(2 * np.arctan(cameras.height / (2 * float(cameras.fy[0]))))
        for i in range(0, len(c2w), every):
            rotation = c2w[i, :3, :3]
            self.server.scene.add_camera_frustum(
                f"/cameras/{i}",
                fov=fov,
                aspect=cameras.width / cameras.height,
                scale=0.1,
                wxyz=_quaternion(rotation),
                position=c2w[i, :3, 3],
                color=(120, 120, 120),
            )

    # ------------------------------------------------------------------ panel
    def show_metrics(self, heading: str, metrics: dict[str, Any]) -> None:
        rows = [f"| {k} | {_shown(v)} |" for k, v in metrics.items() if _shown(v) is not None]
        table = "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else ""
        self.metrics.content = f"{heading}\n\n{table}"

    def plot_loss(self, steps: list[float], losses: list[float]) -> None:
        if len(steps) < 2:
            return
        image = curve_image(steps, losses)
        if self.loss_plot is None:
            self.loss_plot = self.server.gui.add_image(image, label="loss against step")
        else:
            self.loss_plot.image = image

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()


def curve_image(xs: list[float], ys: list[float], size: tuple[int, int] = (360, 160)) -> np.ndarray:
    """A line plot of ``ys`` against ``xs`` as an RGB image (drawn here, so the panel needs
    nothing of the browser but an <img>); the y range is printed in its corners."""
    from PIL import Image, ImageDraw

    w, h = size
    pad = 6
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    points = [
        (pad + (x - x0) / span_x * (w - 2 * pad), h - pad - (y - y0) / span_y * (h - 2 * pad))
        for x, y in zip(xs, ys, strict=True)
    ]
    draw.rectangle((0, 0, w - 1, h - 1), outline=(200, 200, 200))
    draw.line(points, fill=(214, 39, 40), width=2)
    draw.text((pad, pad), f"{y1:.4g}", fill=(90, 90, 90))
    draw.text((pad, h - pad - 12), f"{y0:.4g}", fill=(90, 90, 90))
    draw.text((w - pad - 60, h - pad - 12), f"step {x1:.0f}", fill=(90, 90, 90))
    return np.asarray(image)


def _shown(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return None


def _quaternion(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix."""
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2
    x = np.copysign(x, r[2, 1] - r[1, 2])
    y = np.copysign(y, r[0, 2] - r[2, 0])
    z = np.copysign(z, r[1, 0] - r[0, 1])
    return np.array([w, x, y, z])


class LiveView:
    """The loop's ``on_record``: redraws the field and the loss curve at logged steps, at
    most every ``refresh_s`` seconds and never more than :data:`LIVE_SHARE` of the time
    since the previous redraw (a redraw that took 50 ms waits at least a second)."""

    def __init__(self, viewer: RunViewer, fld: Field, heading: str, refresh_s: float = 1.0):
        self.viewer, self.fld, self.heading, self.refresh_s = viewer, fld, heading, refresh_s
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.last = -float("inf")
        self.cost = 0.0
        self.spent = 0.0

    def on_record(self, record: dict[str, Any]) -> None:
        self.steps.append(float(record["step"]))
        self.losses.append(float(record["loss"]))
        now = time.perf_counter()
        if now - self.last < max(self.refresh_s, self.cost / LIVE_SHARE):
            return
        self.redraw(record)
        self.cost = time.perf_counter() - now
        self.spent += self.cost
        self.last = time.perf_counter()

    def redraw(self, record: dict[str, Any]) -> None:
        self.viewer.show_field(self.fld, mesh_resolution=48)
        self.viewer.plot_loss(self.steps, self.losses)
        shown = {k: v for k, v in record.items() if k != "stage"}
        self.viewer.show_metrics(self.heading, shown)


@contextlib.contextmanager
def live_viewer(
    caption: str | None, port: int, heading: str, on_open: Callable[[str], None] = print
) -> Iterator[Callable[[Field], Callable[[dict], None]]]:
    """A viewer for a training run: yields ``watch(field)`` (the ``watch`` argument of the
    training functions) once ``on_open(url)`` has announced it; the true asset of ``caption``
    stands beside the field. The final field is drawn when the run ends, and the server
    stops."""
    from dreamlift.viewer.run_view import true_asset

    require_viser()
    viewer = RunViewer(port=port, title="dreamlift · live")
    on_open(viewer.url)
    asset = true_asset(caption)
    if asset is not None:
        viewer.show_truth(asset)
    views: list[LiveView] = []

    def watch(fld: Field) -> Callable[[dict], None]:
        views.append(LiveView(viewer, fld, heading))
        return views[-1].on_record

    try:
        yield watch
        for view in views:
            if view.steps:
                view.viewer.show_field(view.fld)
    finally:
        viewer.close()
