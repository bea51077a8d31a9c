#!/usr/bin/env python
"""Regenerate the README's and the extension's screenshots: a real run on the example CT, drawn by Slicer's views.

    python Screenshots/render.py [--symptom TEXT] [--output-dir Screenshots]

Scores the bundled example CT (TotalSegmentator's example, its organ labels)
with the shipped models for one symptom, builds the output nodes as the Slicer
module does, and renders them offscreen with slicer-core's displayable managers
(EGL; see MedSORALib/scene/render.py):

  MedSORA-axial.png   axial slice view: CT (W400/L40) with the organs coloured by relevance
  MedSORA-3d.png      3D view from the front: organ surfaces coloured by relevance, opacity by relevance
  MedSORA-panel.png   panel-sized composite of both and the organs ranked by relevance
  MedSORA-run.json    the symptom, the relevances and the software versions of this run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SYMPTOM = "Pain in the right upper abdomen after fatty meals, with nausea"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symptom", default=SYMPTOM)
    parser.add_argument("--output-dir", default=str(REPO / "Screenshots"))
    args = parser.parse_args(argv)

    import matplotlib.pyplot as plt
    import slicer
    import vtk
    from PIL import Image

    from MedSORALib import __version__
    from MedSORALib.scene.render import composite_figure, render_result
    from MedSORALib.scoring import score_volume
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    data = REPO / "Testing" / "Data"
    volume = read_volume(data / "example_ct_sm.nii.gz")
    masks = read_organ_masks(data / "example_ct_sm_seg.nii.gz", volume, "totalsegmentator")
    (result,) = score_volume(volume, masks, [args.symptom], device="cpu")
    renders = render_result(result, volume, masks)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(renders.axial).save(out / "MedSORA-axial.png")
    Image.fromarray(renders.three_d).save(out / "MedSORA-3d.png")
    figure = composite_figure(result, renders, title=f"MedSORA {__version__}: {result.symptom}")
    figure.savefig(out / "MedSORA-panel.png", format="png")
    plt.close(figure)
    run = {"symptom": result.symptom, "in_domain": result.in_domain, "ct": "Testing/Data/example_ct_sm.nii.gz",
           "axial_slice_ras_s_mm": round(renders.axial_slice_ras, 2),
           "relevance": {o.key: round(o.relevance, 4) for o in result.organs},
           "versions": {"medsora": __version__, "vtk": vtk.vtkVersion.GetVTKVersion(),
                        "slicer_core": getattr(slicer, "__version__", "unknown")}}
    (out / "MedSORA-run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    for name in ("MedSORA-axial.png", "MedSORA-3d.png", "MedSORA-panel.png", "MedSORA-run.json"):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
