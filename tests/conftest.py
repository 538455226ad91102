"""Shared test settings."""

import pytest
import torch

from dreamlift.utils.process import configure_process


def pytest_configure(config):
    """Tests run with the process settings the command line starts with (freed memory kept,
    subnormals flushed on every thread): the commands they call in-process then compute, and
    cost, what they do for a user."""
    configure_process()


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


@pytest.fixture(scope="session")
def tiny_world_sd(tmp_path_factory):
    """A tiny random SD 2.x-layout pipeline folder (8² latents, 16 px images) whose tokenizer
    knows the world's caption words: the prior of the generate, edit and benchmark tests that
    need a world caption but no trained weights."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("diffusers")
    from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd
    from dreamlift.zoo.tokenizer import caption_words

    root = tmp_path_factory.mktemp("tiny_world_sd")
    config = TinySDConfig(unet_channels=(16, 32, 32))
    return save_tiny_sd(root / "sd", sample_size=8, config=config, seed=0, words=caption_words())


@pytest.fixture(scope="session")
def tiny_generator_folder(tmp_path_factory):
    """A tiny random tri-plane generator folder whose images depend on the latent and are
    neither empty nor solid (modulations opened, density biased to half opacity)."""
    from dreamlift.generators import TriplaneConfig, TriplaneGenerator
    from dreamlift.generators.triplane import Modulation

    torch.manual_seed(0)
    gen = TriplaneGenerator(TriplaneConfig.tiny())
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, Modulation):
                m.affine.weight.normal_(0, 0.5)
        gen.decoder.net[-1].bias[0] = -1.0
        for p in gen.decoder.parameters():
            p.mul_(2.0)
    gen.fit_latent_distribution(torch.randn(20, gen.w_dim))
    folder = tmp_path_factory.mktemp("gen") / "tiny-eg3d"
    gen.save_pretrained(folder)
    return folder
