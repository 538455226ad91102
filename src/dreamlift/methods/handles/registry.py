"""Names of the editing methods that share :func:`~dreamlift.methods.handles.edit.edit`'s
signature and result: Diffusion Handles and its two baselines (benchmarks compare them)."""

from __future__ import annotations

from dreamlift.methods.handles.baselines import depth_only, warp_paste_2d
from dreamlift.methods.handles.edit import edit

EDITORS = {"handles": edit, "depth_only": depth_only, "warp_paste_2d": warp_paste_2d}
