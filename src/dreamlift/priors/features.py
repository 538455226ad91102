"""Capture the outputs of named UNet blocks, one record per UNet call.

Diffusion Handles compares decoder activations (``up_blocks.1`` … ``up_blocks.3`` of SD2)
between a reconstruction pass and a guided pass; attention-based editing reads other
blocks. Forward hooks keep this independent of the UNet's code: any name that
``unet.named_modules()`` lists can be captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dreamlift.errors import ModelError


def _main_tensor(output: Any) -> Tensor:
    """A block's feature map: down blocks return (hidden, residuals), transformers an output."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    sample = getattr(output, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    raise TypeError(f"cannot take a feature map from a {type(output).__name__} output")


class FeatureCapture:
    """Context manager recording ``layers`` outputs; ``calls[k][name]`` is call k's map.

    Within a classifier-free-guidance call the batch holds the unconditional rows first,
    then the conditional ones (B uncond + B cond); a call with guidance scale 1 runs the
    conditional branch alone. ``detach=False`` keeps the graph so an energy on the features
    can be differentiated with respect to the UNet's inputs; ``to_cpu`` moves detached maps
    off the accelerator, for recording all steps of a long trajectory.
    """

    def __init__(
        self, unet: nn.Module, layers: Sequence[str], detach: bool = True, to_cpu: bool = False
    ) -> None:
        modules = dict(unet.named_modules())
        unknown = [name for name in layers if name not in modules or not name]
        if unknown:
            blocks = ", ".join(n for n in modules if n.count(".") == 1 and "blocks" in n)
            raise ModelError(
                f"unknown UNet layer(s): {', '.join(map(repr, unknown))}",
                hint=f"blocks of this UNet: {blocks}",
            )
        self.unet = unet
        self.layers = list(dict.fromkeys(layers))
        self.detach = detach
        self.to_cpu = to_cpu
        self.calls: list[dict[str, Tensor]] = []
        self._modules = {name: modules[name] for name in self.layers}
        self._handles: list[RemovableHandle] = []

    @property
    def last(self) -> dict[str, Tensor]:
        """The maps of the most recent UNet call."""
        if not self.calls:
            raise RuntimeError("no UNet call was captured")
        return self.calls[-1]

    def clear(self) -> None:
        self.calls.clear()

    def _start_call(self, module: nn.Module, args: Any) -> None:
        self.calls.append({})

    def _record(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = _main_tensor(output)
            if self.detach:
                x = x.detach()
                if self.to_cpu:
                    x = x.cpu()
            if not self.calls:
                self.calls.append({})
            self.calls[-1][name] = x

        return hook

    def __enter__(self) -> FeatureCapture:
        self._handles.append(self.unet.register_forward_pre_hook(self._start_call))
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._record(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
