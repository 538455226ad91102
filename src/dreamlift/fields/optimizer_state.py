"""Carry Adam moments over when a field replaces its parameters (densification, upsampling).

A field that changes the shape of a parameter builds a fresh optimiser; without its old moments
the next steps would take full-size, unscaled updates. The field says how a moment follows its
parameter (rows copied from their source Gaussian, a grid resampled); everything else (Adam's
step count) is copied as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def carry_optimizer_state(
    old: torch.optim.Optimizer,
    new: torch.optim.Optimizer,
    previous: dict[str, list[Tensor]],
    move: Callable[[Tensor, Tensor], Tensor],
) -> torch.optim.Optimizer:
    """Give ``new`` the learning rates and moments of ``old``, matching groups by ``name``.

    ``previous[name]`` lists the parameters the group held in ``old``, in the order of the
    group's parameters in ``new``. A state tensor shaped like a parameter that was replaced
    becomes ``move(tensor, new_parameter)``; other state is cloned. Returns ``new``.
    """
    old_lrs = {group.get("name"): group["lr"] for group in old.param_groups}
    for group in new.param_groups:
        name = group["name"]
        if name not in old_lrs:
            continue
        group["lr"] = old_lrs[name]
        for new_p, old_p in zip(group["params"], previous[name], strict=True):
            state = old.state.get(old_p)
            if not state:
                continue
            replaced = new_p is not old_p
            new.state[new_p] = {
                key: _moved(value, old_p, new_p, replaced, move) for key, value in state.items()
            }
    return new


def _moved(
    value: object,
    old_p: Tensor,
    new_p: Tensor,
    replaced: bool,
    move: Callable[[Tensor, Tensor], Tensor],
) -> object:
    if not torch.is_tensor(value):
        return value
    if replaced and value.shape == old_p.shape:
        return move(value, new_p)
    return value.clone()
