"""Regenerate the image-evidence figures of docs/measurements.md: the reference-range table, the real CTs'
measurements and contrast phase, the findings on the phantoms with controlled abnormalities (and on the
aorta-only dilated case), and with --relevance the aortic symptom's relevance on them.

    python bench/image_evidence.py                 # prints Markdown
    python bench/image_evidence.py --json out.json # also the raw numbers
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSORALib.finding_boost import image_evidence  # noqa: E402
from MedSORALib.reference_ranges import REFERENCE_RANGES  # noqa: E402
from MedSORALib.image.phantom import ABNORMALITIES, make_phantom  # noqa: E402
from MedSORALib.segmentation_io import masks_from_labelmap, read_organ_masks  # noqa: E402
from MedSORALib.volume_io import read_volume  # noqa: E402

DATA = REPO / "Testing" / "Data"


def reference_table() -> str:
    lines = ["| finding | organ: measurement (measure) | abnormal when | source | population | basis |",
             "|---|---|---|---|---|---|"]
    for r in REFERENCE_RANGES:
        bound = f" and < {r.below:g}" if r.below is not None else ""
        phase = " (unenhanced CT only)" if r.phase else ""
        when = [f"adults: {r.comparison} {r.threshold:g} {r.unit}{bound}{phase}" if r.threshold is not None
                else "adults: not assessed (needs the patient's sex)"]
        when += [f"{v.group}: {r.comparison} {v.threshold:g} {r.unit} ({v.source.split('.')[0]})" for v in r.variants]
        z = f"; z against {r.z_source or r.source.split('.')[0]}" if r.sd else ""
        organ = "smaller of " + " / ".join(r.pair) if r.pair else r.organ
        lines.append(f"| `{r.key}` | {organ}: `{r.measurement}` ({r.measure}) | {'; '.join(when)} | {r.source} | "
                     f"{r.population}{z} | {r.basis}{'; ' + r.patient_note if r.patient_note else ''} |")
    return "\n".join(lines)


def ct_table(name: str, evidence: dict) -> str:
    phase = evidence["contrast_phase"]
    used = ", ".join(f"{k.replace('_median_hu', '')} {v:g}" for k, v in phase["hu_used"].items() if v is not None)
    lines = [f"**{name}**: contrast phase **{phase['phase']}** (confidence {phase['confidence']:.2f}; median HU "
             f"{used})", "",
             "| organ | partial | volume ml | length mm | max diameter mm | thickness mm | vessel diameter mm "
             "| median HU (eroded) | abnormal findings |", "|---|---|---|---|---|---|---|---|---|"]
    for organ, m in evidence["measurements"].items():
        vessel = m.get("perpendicular_diameter_mm")
        if organ == "portal_vein_and_splenic_vein" and m.get("portal_median_perpendicular_diameter_mm") is not None:
            vessel = f"portal median {m['portal_median_perpendicular_diameter_mm']:g}"
        elif organ == "aorta":
            vessel = ", ".join(f"{s} long {m[f'{s}_major_axis_diameter_mm']:g} / short "
                               f"{m[f'{s}_perpendicular_diameter_mm']:g}"
                               for s in ("abdominal", "thoracic", "uncertain")
                               if m.get(f"{s}_major_axis_diameter_mm") is not None)
        elif organ == "inferior_vena_cava" and m.get("median_perpendicular_diameter_mm") is not None:
            vessel = f"median {m['median_perpendicular_diameter_mm']:g}"
        abnormal = [f["text"] for f in evidence["findings"][organ]["findings"] if f["abnormal"]]
        lines.append(f"| {organ} | {'yes' if m['partially_imaged'] else 'no'} | {m['volume_ml']:.1f} | "
                     f"{m['length_mm']:g} | {m['max_diameter_mm']:g} | {m['thickness_mm']:g} | "
                     f"{vessel if vessel is not None else ''} | {m['median_hu']:g} | {'; '.join(abnormal)} |")
    return "\n".join(lines)


def phantom_table(results: dict) -> str:
    lines = ["| phantom | abnormal findings (value) |", "|---|---|"]
    for name, evidence in results.items():
        found = [f"`{f['key']}` {f['value']:g} {f['unit']}" for organ in evidence["findings"].values()
                 for f in organ["findings"] if f["abnormal"]]
        lines.append(f"| {name or 'normal'} | {', '.join(found) or 'none'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the raw numbers here")
    parser.add_argument("--relevance", action="store_true",
                        help="also score 'tearing pain between the shoulder blades' on the normal and dilated "
                             "aorta phantoms")
    args = parser.parse_args()
    out = {}
    print("## Reference ranges\n")
    print(reference_table())
    ct = read_volume(DATA / "example_ct_sm.nii.gz")
    out["example_ct_sm"] = image_evidence(ct, read_organ_masks(DATA / "example_ct_sm_seg.nii.gz", ct, "totalsegmentator"))
    dicom = read_volume(DATA / "example_ct_dicom")
    out["example_ct_dicom"] = image_evidence(
        dicom, read_organ_masks(DATA / "example_ct_dicom_seg.nii.gz", dicom, "totalsegmentator"))
    print("\n## Real CTs\n")
    print(ct_table("example_ct_sm (30 slices of 3 mm)", out["example_ct_sm"]))
    print()
    print(ct_table("example_ct_dicom (20 slices of 2 mm, 0.98 mm pixels)", out["example_ct_dicom"]))
    phantoms = {}
    for abnormality in (None, *ABNORMALITIES):
        volume, labels = make_phantom(0, variation=0.0, contrast=False, abnormality=abnormality)
        phantoms[abnormality] = image_evidence(volume, masks_from_labelmap(labels, "totalsegmentator"))
    print("\n## Phantoms (seed 0, mean anatomy, unenhanced, 3 mm voxels)\n")
    print(phantom_table(phantoms))
    volume, labels = make_phantom(0, variation=0.0, contrast=False, abnormality="dilated_aorta")
    aorta_only = {"aorta": masks_from_labelmap(labels, "totalsegmentator")["aorta"]}
    phantoms["dilated_aorta, aorta alone"] = image_evidence(volume, aorta_only)
    print(phantom_table({"dilated_aorta, aorta alone": phantoms["dilated_aorta, aorta alone"]}).split("\n", 2)[2])
    out["phantoms"] = {str(k): v for k, v in phantoms.items()}
    if args.relevance:
        from MedSORALib.scoring import load_models, score_volume

        models = load_models()
        print("\n## 'tearing pain between the shoulder blades': aorta\n")
        print("| phantom | text prior | fused (before findings) | finding boost | relevance |\n|---|---|---|---|---|")
        for abnormality, alone in ((None, False), ("aaa", False), (None, True), ("dilated_aorta", True)):
            volume, labels = make_phantom(0, variation=0.0, contrast=False, abnormality=abnormality)
            masks = masks_from_labelmap(labels, "totalsegmentator")
            masks = {"aorta": masks["aorta"]} if alone else masks
            result = score_volume(volume, masks, "tearing pain between the shoulder blades", models=models,
                                  with_passages=False)[0]
            aorta = next(o for o in result.organs if o.key == "aorta")
            name = f"{abnormality or 'normal'}{', aorta alone' if alone else ''}"
            print(f"| {name} | {aorta.text_prior:.3f} | {aorta.relevance - aorta.finding_boost:.3f} "
                  f"| {aorta.finding_boost:.3f} | {aorta.relevance:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
