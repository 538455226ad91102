"""Shared test settings."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread per test module: on a 2-core machine shared with other work, two
    threads stall each other (measured 3-6x slower), and results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_depth_sd(tmp_path_factory):
    """A tiny random SD2-depth pipeline folder (with its tiny DPT depth estimator): 16×16
    latents through a 2-level VAE, so 32×32 images. The shrunken output convolution keeps a
    random UNet's eps smooth enough for inversion (see ``TinySDConfig``)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("diffusers")
    from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd

    config = TinySDConfig(unet_channels=(16, 32, 32), unet_out_scale=0.1)
    root = tmp_path_factory.mktemp("tiny_depth_sd")
    return save_tiny_sd(root / "depth", sample_size=16, config=config, depth=True, seed=0)
