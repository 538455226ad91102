"""Does an object have the described colour? Its lit surface, named the way a person would.

What a person calls an object's colour is its surface colour under the light, not the mean
of its lit and shaded sides (an RGB mean darkens and greys every colour, and in RGB the
world's grey is the nearest palette entry to almost any dull colour: an olive pyramid came
out "grey"). So the judge:

1. **Takes the lit surface** (:func:`lit_surface_colour`): foreground pixels away from the
   silhouette's edge (whose colour is mixed with the background), and of those the brightest
   quarter by CIELAB lightness — the faces turned to the light — averaged.
2. **Divides out the light** (:func:`light_gain`): the same statistic on the described
   shape rendered by the world in white under the same light gives the light's gain on the
   lit faces of that shape (a grey card, in photographic terms), so the estimate is the
   surface's albedo. The palette entries are albedos.
3. **Compares perceptually**: CIEDE2000 (Sharma, Wu & Dalal, Color Res. Appl. 30(1), 2005,
   eq. 1–20) between the estimate and each palette colour, in CIELAB (sRGB, D65). CIEDE2000
   weighs lightness, chroma and hue differences apart (ΔL′, ΔC′, ΔH′, all reported), so a
   dull olive is far from grey (chroma, hue).
4. **Names a colour only when a person would** (:func:`colour_verdict`): the nearest
   palette colour is a ``match`` when the estimate lies within ``MATCH_FRACTION`` of the
   distance from that colour to its nearest palette neighbour (or within ``MATCH_FLOOR``
   ΔE00 where two palette colours sit close together), and the second nearest is at
   least ``MARGIN_RATIO`` times farther; otherwise the verdict is ``ambiguous`` (between two
   palette colours) or ``none`` (far from every one: olive, a colour the palette lacks). A
   colour half-way between two palette colours — the point of the CIELAB segment between
   them equally far (ΔE00) from both — is never claimed as either. (A midpoint in RGB or
   even in CIELAB is not perceptually half-way: CIEDE2000 compresses chroma differences,
   so the CIELAB midpoint of green and grey is twice as far from grey as from green, and a
   person calls it green.)
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.metrics.ground_truth import (
    GroundTruthSettings,
    RenderFn,
    scoring_cameras,
)
from dreamlift.world import COLOURS, Lighting, RenderSettings, render
from dreamlift.world.assets import Asset, Description, Part

LIT_FRACTION = 0.25
"""The brightest share of a surface's interior pixels taken as its lit faces."""
MATCH_FRACTION = 0.5
"""A palette colour matches when ΔE00 to it is at most this share of the ΔE00 from it to its
nearest palette neighbour: nearer than half-way."""
MATCH_FLOOR = 12.0
"""...or at most this ΔE00, whichever is larger: blue and purple are only 13.9 apart, and
half of that would refuse a result a person calls blue at once (an edit's blue cube measured
ΔE00 10.3 from blue and 20.9 from purple); the margin below still makes the nearer colour
clearly nearer."""
MARGIN_RATIO = 1.5
"""...and the second nearest palette colour is at least this many times farther."""

_RGB_TO_XYZ = torch.tensor(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=torch.float64,
)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def srgb_to_lab(rgb: Tensor) -> Tensor:
    """CIELAB (..., 3) of sRGB colours in [0, 1] (..., 3), D65 white."""
    rgb = rgb.detach().double().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = torch.where(xyz > eps, xyz.clamp(min=1e-12) ** (1 / 3), (kappa * xyz + 16) / 116)
    return torch.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def lab_to_srgb(lab: Tensor) -> Tensor:
    """Inverse of :func:`srgb_to_lab` (out-of-gamut colours are clamped to [0, 1])."""
    lab = lab.double()
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    eps, kappa = 216 / 24389, 24389 / 27
    xyz = torch.where(f**3 > eps, f**3, (116 * f - 16) / kappa) * _WHITE_D65
    linear = (xyz @ torch.linalg.inv(_RGB_TO_XYZ).T).clamp(0, 1)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return rgb.clamp(0, 1)


def ciede2000(lab1: Tensor, lab2: Tensor, k_l: float = 1.0) -> dict[str, Tensor]:
    """CIEDE2000 colour difference (Sharma et al. 2005, eq. 1–20; k_C = k_H = 1) of
    broadcastable CIELAB tensors (..., 3): ``de`` and its weighted lightness, chroma and hue
    terms ``dl``, ``dc``, ``dh``."""
    l1, a1, b1 = lab1.double().unbind(-1)
    l2, a2, b2 = lab2.double().unbind(-1)
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.atan2(b1, a1p) % (2 * math.pi)
    h2p = torch.atan2(b2, a2p) % (2 * math.pi)
    achromatic = (c1p * c2p) == 0
    dhp = h2p - h1p
    dhp = torch.where(dhp > math.pi, dhp - 2 * math.pi, dhp)
    dhp = torch.where(dhp < -math.pi, dhp + 2 * math.pi, dhp)
    dhp = torch.where(achromatic, torch.zeros_like(dhp), dhp)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * torch.sqrt(c1p * c2p) * torch.sin(dhp / 2)
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    hp_mean = torch.where((h1p - h2p).abs() > math.pi, (h_sum + 2 * math.pi) / 2, h_sum / 2)
    hp_mean = torch.where(achromatic, h_sum, hp_mean % (2 * math.pi))
    t = (
        1
        - 0.17 * torch.cos(hp_mean - math.radians(30))
        + 0.24 * torch.cos(2 * hp_mean)
        + 0.32 * torch.cos(3 * hp_mean + math.radians(6))
        - 0.20 * torch.cos(4 * hp_mean - math.radians(63))
    )
    d_theta = math.radians(30) * torch.exp(-(((torch.rad2deg(hp_mean) - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / torch.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -torch.sin(2 * d_theta) * r_c
    dl, dc, dh = d_l / (k_l * s_l), d_c / s_c, d_h / s_h
    de = torch.sqrt((dl**2 + dc**2 + dh**2 + r_t * dc * dh).clamp(min=0))
    return {"de": de, "dl": dl, "dc": dc, "dh": dh}


# ---------------------------------------------------------------------- the lit surface
def interior(mask: Tensor) -> Tensor:
    """(B, H, W) bool: pixels of ``mask`` whose 8 neighbours are in it too (no edge pixels,
    whose colour is part background)."""
    eroded = -F.max_pool2d(-mask.float()[:, None], 3, stride=1, padding=1)
    return eroded[:, 0] > 0.5


def lit_surface_colour(rgb: Tensor, mask: Tensor) -> Tensor | None:
    """Mean rgb (3,) of the brightest ``LIT_FRACTION`` (by CIELAB L*) of the interior pixels of
    ``mask`` (B, H, W) in ``rgb`` (B, H, W, 3); the whole mask when it has no interior; None
    when empty."""
    inner = interior(mask)
    pixels = rgb.detach().cpu().clamp(0, 1)[inner if bool(inner.any()) else mask]
    if not len(pixels):
        return None
    lightness = srgb_to_lab(pixels)[:, 0]
    keep = max(1, int(math.ceil(LIT_FRACTION * len(pixels))))
    return pixels[lightness.topk(keep).indices].mean(0).float()


def foreground(out: dict[str, Tensor]) -> Tensor:
    """(B, H, W) bool: opacity > 0.5."""
    return out["opacity"][..., 0].detach().cpu() > 0.5


@lru_cache(maxsize=64)
def _white_gain(shape: str, lighting: Lighting | None, settings: GroundTruthSettings) -> Tensor:
    asset = Asset((Part(shape, "white", (0.0, 0.0, 0.0)),))
    world = RenderSettings(lighting=lighting) if lighting is not None else RenderSettings()
    out = render(asset, scoring_cameras(settings), world)
    lit = lit_surface_colour(out["rgb"], out["alpha"][..., 0] > 0.5)
    assert lit is not None
    return lit / torch.tensor(COLOURS["white"])


def light_gain(
    shape: str, lighting: Lighting | None = None, settings: GroundTruthSettings | None = None
) -> Tensor:
    """Per-channel gain (3,) of the light on the lit faces of ``shape`` seen by the scoring
    views: the lit-surface colour of the shape rendered in white, over white's albedo."""
    return _white_gain(shape, lighting, settings or GroundTruthSettings())


# ---------------------------------------------------------------------- naming a colour
def _palette_lab() -> tuple[list[str], Tensor, Tensor]:
    names = list(COLOURS)
    lab = srgb_to_lab(torch.tensor([COLOURS[n] for n in names]))
    between = ciede2000(lab[:, None], lab[None])["de"] + torch.eye(len(names)) * 1e9
    return names, lab, between.min(1).values


def colour_verdict(albedo: Tensor) -> dict[str, object]:
    """Name an albedo estimate (3,) after the palette, as the module doc says.

    Returns ``verdict`` (``match``, ``ambiguous`` or ``none``), ``nearest`` (the nearest
    palette colour, whatever the verdict), ``named`` (the nearest when it is a match, else
    None), ``colour_distances`` {colour: ΔE00}, and the ΔL′, ΔC′, ΔH′ terms to the nearest.
    """
    names, palette, neighbour = _palette_lab()
    lab = srgb_to_lab(albedo.clamp(0, 1))
    terms = ciede2000(lab.expand_as(palette), palette)
    de = terms["de"]
    order = de.argsort()
    first, second = int(order[0]), int(order[1])
    close = float(de[first]) <= max(MATCH_FRACTION * float(neighbour[first]), MATCH_FLOOR)
    clear = float(de[second]) >= MARGIN_RATIO * float(de[first])
    verdict = "match" if close and clear else ("none" if clear else "ambiguous")
    return {
        "verdict": verdict,
        "nearest": names[first],
        "named": names[first] if verdict == "match" else None,
        "colour_distances": {n: float(d) for n, d in zip(names, de, strict=True)},
        "delta_lightness": float(terms["dl"][first]),
        "delta_chroma": float(terms["dc"][first]),
        "delta_hue": float(terms["dh"][first]),
        "lab": [float(x) for x in lab],
    }


def judge_colour(
    rgb: Tensor,
    mask: Tensor,
    shape: str,
    described: str,
    lighting: Lighting | None = None,
    settings: GroundTruthSettings | None = None,
) -> dict[str, object]:
    """The colour verdict for the pixels ``mask`` (B, H, W) of renders ``rgb`` (B, H, W, 3) of
    an object meant to be a ``described`` ``shape`` seen by the scoring views under
    ``lighting`` (the world's default light when None).

    Returns :func:`colour_verdict`'s keys plus ``lit_colour``, ``albedo`` (the estimate),
    ``colour_winner`` (= ``nearest``) and ``colour_correct`` (a ``match`` to ``described``).
    """
    lit = lit_surface_colour(rgb, mask)
    if lit is None:
        return {"verdict": "none", "named": None, "colour_winner": None, "colour_correct": False}
    albedo = (lit / light_gain(shape, lighting, settings)).clamp(0, 1)
    verdict = colour_verdict(albedo)
    return {
        "lit_colour": [float(x) for x in lit],
        "albedo": [float(x) for x in albedo],
        **verdict,
        "colour_winner": verdict["nearest"],
        "colour_correct": verdict["named"] == described,
    }


def colour_ranking(
    render_fn: RenderFn,
    description: Description,
    settings: GroundTruthSettings | None = None,
    lighting: Lighting | None = None,
) -> dict[str, object]:
    """The colour verdict (:func:`judge_colour`) of a single-object result over the scoring
    views, unaligned (colour does not depend on pose).

    Keys: ``lit_colour``, ``albedo``, ``colour_verdict`` (``match`` / ``ambiguous`` /
    ``none``), ``colour_winner`` (the nearest palette colour), ``colour_named`` (the winner
    when it is a match), ``colour_distances`` {colour: ΔE00}, ``colour_correct``.
    """
    if len(description.objects) != 1:
        raise ValueError("colour ranking needs a single-object description")
    settings = settings or GroundTruthSettings()
    with torch.no_grad():
        out = render_fn(scoring_cameras(settings))
    described = description.objects[0]
    judged = judge_colour(
        out["rgb"], foreground(out), described.shape, described.colour, lighting, settings
    )
    return {
        "lit_colour": judged.get("lit_colour"),
        "albedo": judged.get("albedo"),
        "colour_verdict": judged["verdict"],
        "colour_winner": judged["colour_winner"],
        "colour_named": judged["named"],
        "colour_distances": judged.get("colour_distances", {}),
        "colour_correct": judged["colour_correct"],
    }
