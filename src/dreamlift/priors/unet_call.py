"""The prior's one door to its UNet: eager when autograd or hooks need the modules, a traced
graph when neither does.

Why: the toy UNets are small (1.7 M parameters at 16² latents), so on a CPU a diffusers
forward spends about a third of its time in Python — module calls, config look-ups, shape
checks — rather than in kernels. Score distillation calls the UNet many times a step without
gradients (GE3D: up to 12 calls, an inversion and a guided trajectory), so that overhead is
most of a run. A TorchScript trace of the same forward runs the same ATen kernels in the same
order without the Python: the outputs are bit-identical (tested at every batch size and
thread count), so traced and eager runs give the same result, step for step, and ``--resume``
stays exact across the two.

A trace is specific to its input shapes and to the Python branches taken while tracing, so
one is kept per call signature (shapes, dtypes, device, whether a camera code is passed). It
is used only when nothing needs the eager modules:

* autograd is off (``torch.no_grad`` / ``inference_mode``) — a call that needs the UNet's
  Jacobian, or trains it, runs eagerly;
* the UNet is in eval mode;
* no forward hook is registered on any of its modules (feature capture, as Diffusion
  Handles records, runs eagerly);
* the attention processors are the ones traced, with the same plain attribute values
  (installing others, e.g. the multi-view attention, or changing a processor's ``num_views``
  retraces).

The graph reads the UNet's parameter tensors, so in-place weight updates are seen. What it
cannot see is a change to the forward's other Python-level settings after tracing (FreeU,
attention slicing, forward chunking), a replaced parameter object, or a moved UNet: call
:meth:`UNetCall.clear` after those (``.to()`` on the prior's modules keeps the objects). Set
``DREAMLIFT_EAGER_UNET=1`` to turn tracing off.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

_Key = tuple[Any, ...]


class _Forward(nn.Module):
    """The UNet's forward with positional tensors only (what ``torch.jit.trace`` takes)."""

    def __init__(self, unet: nn.Module, with_class_labels: bool) -> None:
        super().__init__()
        self.unet = unet
        self.with_class_labels = with_class_labels

    def forward(self, x: Tensor, t: Tensor, states: Tensor, *labels: Tensor) -> Tensor:
        class_labels = labels[0] if self.with_class_labels else None
        return self.unet(
            x, t, encoder_hidden_states=states, class_labels=class_labels, return_dict=False
        )[0]


class UNetCall(nn.Module):
    """``UNetCall(unet)(x, t, states, class_labels=None)`` → the UNet's output tensor.

    The prior times its UNet by hooks on this module (the iteration split), which stay on
    whichever path a call takes.
    """

    def __init__(self, unet: nn.Module, trace: bool = True) -> None:
        super().__init__()
        self.unet = unet
        self.trace = trace and os.environ.get("DREAMLIFT_EAGER_UNET", "") in ("", "0")
        self._traces: dict[_Key, Any] = {}
        self._processors: list[tuple[Any, tuple]] | None = None
        self._inner: list[nn.Module] | None = None
        """The UNet's modules, listed once (walking them per call cost 0.6 ms, a tenth of a
        toy UNet call) and again when the processors change; a UNet whose other modules are
        replaced needs :meth:`clear`."""
        self._attention: list[nn.Module] = []

    def clear(self) -> None:
        """Forget every trace (after replacing parameters or moving the UNet)."""
        self._traces.clear()
        self._processors = None
        self._inner = None

    def forward(
        self, x: Tensor, t: Tensor, states: Tensor, class_labels: Tensor | None = None
    ) -> Tensor:
        args = (x, t, states) if class_labels is None else (x, t, states, class_labels)
        if not self._traceable():
            return self.unet(
                x, t, encoder_hidden_states=states, class_labels=class_labels, return_dict=False
            )[0]
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        graph = self._traces.get(key)
        if graph is None:
            graph = self._traces[key] = self._trace(args)
        return graph(*args)

    def _traceable(self) -> bool:
        if not self.trace or torch.is_grad_enabled() or self.unet.training:
            return False
        if self._inner is None:
            self._inner = list(self.unet.modules())
            self._attention = [m for m in self._inner if hasattr(m, "set_processor")]
        processors = [_processor_state(m.processor) for m in self._attention]
        if not self._same_processors(processors):
            self._traces.clear()
            self._processors = processors
            self._inner = list(self.unet.modules())  # processor modules and their hooks
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self._inner)

    def _same_processors(self, processors: list[tuple[Any, tuple]]) -> bool:
        """The same processor objects (not ids, which a freed object's successor may reuse)
        with the same plain attribute values."""
        old = self._processors
        return (
            old is not None
            and len(old) == len(processors)
            and all(a[0] is b[0] and a[1] == b[1] for a, b in zip(old, processors, strict=True))
        )

    def _trace(self, args: tuple[Tensor, ...]) -> Any:
        forward = _Forward(self.unet, len(args) == 4)  # no .eval(): it would recurse into the UNet
        with warnings.catch_warnings():
            # Shape checks and branches on sizes are baked in; the cache key holds the sizes.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.13 marks jit tracing deprecated in favour of torch.compile/export; a
            # trace takes 0.5 s, while a compile would count in every fresh run's time.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.trace(forward, args, check_trace=False)


def _processor_state(processor: Any) -> tuple[Any, tuple]:
    """A processor and its plain settings (numbers, strings, flags): what a forward's Python
    branches may read from it."""
    plain = (bool, int, float, str, type(None))
    values = tuple(sorted((k, v) for k, v in vars(processor).items() if isinstance(v, plain)))
    return processor, values
