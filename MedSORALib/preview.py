"""The preview picture of a scored symptom, and the pieces it shares with the offscreen render.

:func:`write_preview` draws three orthogonal slices through the most relevant organ with the
relevance overlay, a bar chart of the organs, and the contrast phase and abnormal findings below
(matplotlib, no Slicer). :mod:`MedSORALib.scene.render` draws Slicer's own views instead and
reuses :func:`draw_relevance_bars`, :func:`preview_title` and :func:`draw_findings_caption`, so
both pictures give the same numbers; :func:`MedSORALib.result_files.write_best_preview` picks one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from . import __version__, organs
from .colors import relevance_color, relevance_colormap
from .files import atomic_target
from .result_format import segment_name
from .scoring import SymptomResult
from .volume_io import Volume, closest_canonical


def findings_caption(result: SymptomResult, limit: int = 4) -> str:
    """Contrast phase and abnormal findings as lines of text (preview, logs)."""
    lines = []
    phase = result.contrast_phase or {}
    if phase:
        lines.append(f"contrast phase: {phase.get('phase')} (confidence {float(phase.get('confidence', 0)):.2f})")
    abnormal = [(o, f) for o in result.organs for f in o.findings if f.get("abnormal")]
    for o, f in abnormal[:limit]:
        boost = f"  [relevance +{o.finding_boost:.3f}]" if o.finding_boost > 0 else ""
        lines.append(f"{f['text']}{boost}")
    if len(abnormal) > limit:
        lines.append(f"... and {len(abnormal) - limit} more abnormal findings (see the JSON)")
    if phase and not abnormal:
        lines.append("no measurement outside its reference range")
    return "\n".join(lines)



def _slices_through(volume: Volume, mask: np.ndarray) -> tuple[int, int, int]:
    centre = np.argwhere(mask).mean(axis=0)
    return tuple(int(round(c)) for c in centre)  # type: ignore[return-value]


#: The preview's panels, left to right.
PREVIEW_VIEWS = ("axial", "coronal", "sagittal")


def preview_slices(volume: Volume, arrays: Mapping[str, np.ndarray], focus: np.ndarray):
    """Axial, coronal and sagittal slices through the centre of ``focus``, in radiological convention.

    Whatever the file's storage order, every panel shows the patient's right on
    the image's left; the axial panel has anterior at the top, the coronal and
    sagittal panels superior at the top, and the sagittal panel anterior on the
    left (as 3D Slicer shows it). Row 0 is the top row.

    Args:
        volume: the grid of ``arrays`` and ``focus``.
        arrays: name -> array ``[i, j, k]`` on that grid.
        focus: boolean mask whose centre the slices pass through.

    Returns:
        (panels, aspects): ``panels[view][name]`` 2D arrays; ``aspects[view]`` =
        pixel height / pixel width in mm.
    """
    canonical, moved = closest_canonical(volume, {**arrays, "__focus__": focus})
    ci, cj, ck = _slices_through(canonical, moved.pop("__focus__"))
    sp = canonical.spacing
    # In RAS index order i grows to the right, j to anterior, k to superior: reverse them so that
    # the patient's right, anterior and superior come first (left, top).
    panels = {
        "axial": {n: a[::-1, ::-1, ck].T for n, a in moved.items()},
        "coronal": {n: a[::-1, cj, ::-1].T for n, a in moved.items()},
        "sagittal": {n: a[ci, ::-1, ::-1].T for n, a in moved.items()},
    }
    aspects = {"axial": sp[1] / sp[0], "coronal": sp[2] / sp[0], "sagittal": sp[2] / sp[1]}
    return panels, aspects


def draw_relevance_bars(ax, result: SymptomResult) -> None:
    """The organs ranked by relevance as horizontal bars in the relevance colours (both previews)."""
    ranked = result.organs[::-1]
    ax.barh([segment_name(o.key) for o in ranked], [o.relevance for o in ranked],
            color=[relevance_color(o.relevance) for o in ranked])
    ax.set_xlim(0, 1)
    ax.set_xlabel("relevance")
    ax.tick_params(labelsize=8)


def preview_title(result: SymptomResult) -> str:
    """``MedSORA <version>: <symptom>`` (shortened), marked when the symptom is out of domain or points outside
    the 13 structures (its ``scope``)."""
    title = result.symptom if len(result.symptom) < 70 else result.symptom[:67] + "..."
    if result.scope == "abdominal-other":  # abdominal, in a structure MedSORA does not show
        title += f"  [abdominal, outside the 13 structures: {(result.outside or 'other').replace('_', ' ')}]"
    elif not result.in_domain:
        title += "  [out of domain: not an abdominal symptom]"
    return f"MedSORA {__version__}: {title}"


def draw_findings_caption(fig, result: SymptomResult) -> float:
    """:func:`findings_caption` at the figure's foot; returns the height (figure fraction) it takes."""
    caption = findings_caption(result)
    if not caption:
        return 0.0
    fig.text(0.01, 0.01, caption, fontsize=7, family="monospace", va="bottom", ha="left")
    return 0.04 + 0.035 * caption.count("\n")


def write_preview(path: Path, result: SymptomResult, volume: Volume, masks: Mapping[str, np.ndarray]) -> Path:
    """Axial, coronal and sagittal slices through the most relevant organ plus a bar chart."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    cmap = relevance_colormap()
    top = result.top.key
    relevance_map = np.full(volume.shape, np.nan, dtype=np.float32)
    for o in sorted(result.organs, key=lambda o: o.relevance):
        relevance_map[masks[o.key]] = o.relevance
    ct = np.clip((volume.array + 160.0) / 400.0, 0, 1)  # abdominal window W400/L40
    panels, aspects = preview_slices(volume, {"ct": ct, "relevance": relevance_map}, masks[top])
    fig = plt.figure(figsize=(13, 4.2), dpi=110)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.25])
    for n, name in enumerate(PREVIEW_VIEWS):
        ax = fig.add_subplot(grid[0, n])
        ax.imshow(panels[name]["ct"], cmap="gray", aspect=aspects[name], origin="upper")
        shown = np.ma.masked_invalid(panels[name]["relevance"])
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, alpha=0.55, aspect=aspects[name], origin="upper")
        ax.set_title(f"{name} through {organs.ORGANS[top].display_name}", fontsize=9)
        ax.axis("off")
    draw_relevance_bars(fig.add_subplot(grid[0, 3]), result)
    fig.suptitle(preview_title(result), fontsize=10)
    fig.tight_layout(rect=(0, draw_findings_caption(fig, result), 1, 1))
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
