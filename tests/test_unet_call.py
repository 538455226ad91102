"""The prior's UNet door: traced calls equal eager ones bit for bit, and the trace is used only
when nothing needs the eager modules (autograd, hooks, training, new attention processors)."""

from __future__ import annotations

import pytest
import torch
from mvdream_layout import small_unet

from dreamlift.priors.multiview import add_camera_embedding, install_multiview_attention
from dreamlift.priors.unet_call import UNetCall

pytest.importorskip("diffusers")


def _unet(camera: bool = False):
    unet = small_unet()
    return (add_camera_embedding(unet) if camera else unet).eval()


def _inputs(batch: int, seed: int = 0, camera: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    states = torch.randn(batch, 7, 12, generator=g)
    return (x, t, states, torch.randn(batch, 16, generator=g)) if camera else (x, t, states)


def _eager(unet, x, t, states, camera=None):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=states, class_labels=camera).sample


@pytest.mark.parametrize("camera", [False, True])
def test_traced_calls_equal_eager_calls_bit_for_bit_at_every_batch_size(camera):
    unet = _unet(camera)
    call = UNetCall(unet)
    with torch.no_grad():
        for batch in (2, 1, 3, 2):
            args = _inputs(batch, seed=batch, camera=camera)
            assert torch.equal(call(*args), _eager(unet, *args))
    assert len(call._traces) == 3  # one per signature, reused


def test_autograd_hooks_and_training_take_the_eager_path():
    unet = _unet()
    call = UNetCall(unet)
    x, t, states = _inputs(2)
    x.requires_grad_(True)
    call(x, t, states).sum().backward()  # autograd on: eager, and the gradient reaches x
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not call._traces
    seen = []
    handle = unet.down_blocks[0].register_forward_hook(lambda m, a, o: seen.append(1))
    with torch.no_grad():
        call(x, t, states)
    handle.remove()
    assert seen and not call._traces  # a hook on any inner module runs, so no trace
    unet.train()
    with torch.no_grad():
        call(x, t, states)
    assert not call._traces
    unet.eval()
    with torch.no_grad():
        call(x, t, states)
    assert len(call._traces) == 1


def test_the_trace_sees_in_place_weight_updates_and_new_attention_processors():
    unet = _unet()
    call = UNetCall(unet)
    args = _inputs(4)
    with torch.no_grad():
        before = call(*args)
        unet.conv_out.weight.mul_(2.0)
        after = call(*args)
        assert not torch.equal(before, after)
        assert torch.equal(after, _eager(unet, *args))
        install_multiview_attention(unet, 4)  # views attend to each other: a new forward
        multiview = call(*args)
        assert torch.equal(multiview, _eager(unet, *args))
        assert not torch.equal(multiview, after)
        for module in unet.modules():  # a processor's setting changed in place: retraced
            processor = getattr(module, "processor", None)
            if getattr(processor, "num_views", None) == 4:
                processor.num_views = 2
        pairs = call(*args)
        assert torch.equal(pairs, _eager(unet, *args))
        assert not torch.equal(pairs, multiview)


def test_tracing_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("DREAMLIFT_EAGER_UNET", "1")
    call = UNetCall(_unet())
    with torch.no_grad():
        call(*_inputs(2))
    assert not call._traces
