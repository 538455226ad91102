"""The viser viewer: what it draws (against the world's truth), how often it redraws while a
run trains, its errors, and — in a real headless Chromium — that the page shows the object.

The browser test needs Debian's ``chromium`` (``.ci/run`` installs it where it can) and
viser (the ``viewer`` extra); without them it skips and says why.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from cli_helpers import run_main

from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.fields.sh import SH_C0
from dreamlift.viewer.scene import asset_mesh, field_mesh, gaussian_splats
from dreamlift.viewer.server import LIVE_SHARE, LiveView, curve_image
from dreamlift.world import asset_from_caption

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_splats_are_the_fields_gaussians():
    fld = GaussianField(GaussiansConfig(num_init=300, sh_degree=1))
    s = gaussian_splats(fld)
    assert s.centers.shape == (300, 3) and s.covariances.shape == (300, 3, 3)
    assert np.allclose(s.covariances, s.covariances.transpose(0, 2, 1), atol=1e-6)
    assert (np.linalg.eigvalsh(s.covariances.astype(np.float64)) > 0).all()
    scales = np.exp(fld.log_scales.detach().numpy())
    traces = np.trace(s.covariances, axis1=1, axis2=2)
    assert np.allclose(traces, (scales**2).sum(1), rtol=1e-4)  # R S² Rᵀ keeps the trace
    dc = (fld.features_dc[:, 0].detach() * SH_C0 + 0.5).clamp(0, 1).numpy()
    assert np.allclose(s.rgbs, dc) and np.allclose(s.opacities[:, 0], fld.opacities.detach())


def test_the_truth_mesh_lies_on_the_world_asset_in_its_colours():
    asset = asset_from_caption("a blue cube with a red sphere on top")
    mesh = asset_mesh(asset, resolution=64)
    distance, part = asset.sdf(torch.from_numpy(mesh.vertices))
    assert distance.abs().max() < 0.05  # within a voxel of the true surface
    expected = (asset.colours()[part] * 255).round().numpy().astype(np.uint8)
    assert (np.abs(mesh.colours.astype(int) - expected.astype(int)) <= 1).mean() > 0.95
    assert {tuple(c) for c in mesh.colours[:, :3]} >= {tuple(c) for c in expected[:1]}


def test_a_nerf_is_drawn_as_its_density_surface():
    fld = NerfField(NerfConfig(resolutions=((0, 48),)), torch.Generator().manual_seed(0))
    fld.set_from_functions(
        lambda p: 50.0 * (p.norm(dim=-1) < 0.4).float(),
        lambda p: torch.tensor([0.1, 0.8, 0.1]).expand(p.shape[0], 3),
    )
    mesh = field_mesh(fld, resolution=48)
    assert mesh is not None
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(np.median(radii) - 0.4) < 0.06
    assert mesh.colours[:, 1].mean() > 150 and mesh.colours[:, 0].mean() < 80
    empty = NerfField(NerfConfig(resolutions=((0, 16),)))
    empty.set_from_functions(
        lambda p: torch.zeros(p.shape[0]), lambda p: torch.zeros(p.shape[0], 3)
    )
    assert field_mesh(empty, resolution=16) is None  # an early live view: nothing to draw yet


class SlowViewer:
    """Stands for a viewer whose redraw takes ``cost`` seconds."""

    def __init__(self, cost: float) -> None:
        self.cost, self.fields, self.plots = cost, 0, 0

    def show_field(self, fld, mesh_resolution: int = 64) -> None:
        time.sleep(self.cost)
        self.fields += 1

    def plot_loss(self, steps, losses) -> None:
        self.plots += 1

    def show_metrics(self, heading, metrics) -> None:
        pass


def test_a_live_view_keeps_to_its_share_of_the_run():
    viewer = SlowViewer(cost=0.02)
    view = LiveView(viewer, fld=None, heading="h", refresh_s=0.0)  # type: ignore[arg-type]
    started = time.perf_counter()
    step = 0
    while time.perf_counter() - started < 1.5:
        step += 1
        time.sleep(0.002)  # a training step
        view.on_record({"step": step, "loss": 1.0 / step})
    elapsed = time.perf_counter() - started
    assert viewer.fields >= 2, "the live view never redrew"
    assert view.spent / elapsed < LIVE_SHARE * 1.5, (view.spent, elapsed)
    assert len(view.steps) == step  # every record is kept for the curve


def test_the_loss_curve_is_drawn_where_the_values_are():
    image = curve_image([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], size=(100, 60))
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    ys, xs = np.nonzero(red)
    assert red.sum() > 50
    assert ys[xs.argmin()] < ys[xs.argmax()]  # a falling loss: high on the left, low on the right


def test_view_errors_are_one_line(capsys, tmp_path, monkeypatch):
    code, err = run_main(capsys, "view", str(tmp_path / "nothing"), "--seconds", "0")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, err = run_main(capsys, "view", str(tmp_path / "empty"), "--seconds", "0")
    assert code == 2 and "no run checkpoint" in err
    monkeypatch.setitem(sys.modules, "viser", None)  # not installed
    code, err = run_main(capsys, "view", str(tmp_path / "empty"), "--seconds", "0")
    assert code == 2 and "pip install 'dreamlift[viewer]'" in err


def _driver():  # noqa: ANN202
    """A headless Chromium driven by selenium, its viewport 1280×720; skips when either is
    missing."""
    browser = next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip(
            "no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--window-size=1280,720",
    ):
        options.add_argument(arg)
    options.binary_location = browser
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _red(region: np.ndarray) -> int:
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return int(((r > 140) & (g < 115) & (b < 115)).sum())


def test_the_viewer_page_shows_the_result_and_the_truth_in_a_real_browser(tmp_path):
    """A person's check: open the page, wait for the scene, look at it. The viewer's
    opening camera puts the result left of the middle and the true cube beside it."""
    pytest.importorskip("viser", reason="the viewer extra is not installed")
    driver = _driver()
    from PIL import Image

    run = tmp_path / "cube"
    fit = ["reconstruct", "--asset", "a red cube", "--steps", "150", "--resolution", "24"]
    fit += ["--train-views", "6", "--turntable-size", "32", "--out", str(run), "--quiet"]
    subprocess.run([sys.executable, "-m", "dreamlift", *fit], env=ENV, check=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "dreamlift", "view", str(run), "--port", str(_free_port())],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stderr.readline()  # type: ignore[union-attr]
        assert "viewer: http://127.0.0.1:" in line, line
        driver.get(line.split()[1])
        deadline = time.time() + 90  # software WebGL: the first frames take seconds
        while True:
            page = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
            result, truth = page[250:450, 250:480], page[250:450, 480:720]
            if (_red(result) > 1000 and _red(truth) > 2000) or time.time() > deadline:
                break
            time.sleep(1.0)
        Image.fromarray(page).save(tmp_path / "page.png")
    finally:
        driver.quit()
        server.kill()
        server.wait()
    assert page.shape[:2] == (720, 1280)
    assert _red(result) > 1000, f"the result is not on the page ({_red(result)} red pixels)"
    assert _red(truth) > 2000, f"the true cube is not on the page ({_red(truth)} red pixels)"
    below = page[500:650, 100:900]
    assert (below.min(axis=-1) > 200).all(), "something is drawn where nothing should be"
