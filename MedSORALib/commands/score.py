"""``medsora score``: score the organs of a CT for one or more symptoms and write the results."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError, SegmentationError, SymptomError

DESCRIPTION = """\
Score the organs of a CT for one or more symptoms.

MedSORA reads the CT and its organ segmentation, encodes each organ once,
and for every symptom writes (PREFIX, or PREFIX_1, PREFIX_2 ... for several):
  PREFIX.seg.nrrd  one segment per organ, coloured by relevance, with SNOMED
                   terminology and the tag MedSORA.Relevance (open in 3D Slicer)
  PREFIX.json      symptom, in_domain, contrast_phase, organs sorted by
                   relevance (relevance, text_prior, image_score,
                   finding_boost and why, measurements, findings against
                   cited reference ranges), supporting knowledge passages,
                   model versions, input SHA-256
  PREFIX.png       with --preview: slices through the most relevant organ
                   and a bar chart
  PREFIX_seg.dcm   with --dicom-seg (DICOM series input): a DICOM SEG

Organ masks come from --segmentation: a label map (give --label-scheme) or a
Slicer .seg.nrrd (segments matched by name or terminology). Without it,
TotalSegmentator is run for the 13 structures when it is installed."""

EPILOG = """\
examples:
  medsora score --volume Testing/Data/example_ct_sm.nii.gz \\
      --segmentation Testing/Data/example_ct_sm_seg.nii.gz --label-scheme totalsegmentator \\
      --symptom "painless jaundice with pale stools and weight loss" --output out/example --preview
  medsora score --volume ct_dicom/ --segmentation organs.seg.nrrd \\
      --symptoms-file symptoms.txt --output out/patient7 --dicom-seg"""

TOTALSEG_ROI = ("spleen kidney_right kidney_left gallbladder esophagus liver stomach aorta inferior_vena_cava "
                "portal_vein_and_splenic_vein pancreas adrenal_gland_right adrenal_gland_left").split()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing the models and the device (shared with ``medsora batch``)."""
    group = parser.add_argument_group("models")
    group.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device (default: cpu)")
    group.add_argument("--setting", choices=("full11", "paper7"), default="full11",
                       help="text classes: our 11 (all 13 structures, default) or the paper's 7")
    group.add_argument("--text-weights", metavar="DIR", help="text model folder (default: shipped weights)")
    group.add_argument("--image-weights", metavar="DIR", help="image/alignment model folder (default: shipped)")
    group.add_argument("--text-encoder", metavar="DIR",
                       help="local sentence-encoder folder (default: bundled all-MiniLM-L6-v2)")
    group.add_argument("--image-weight", type=float, default=None, metavar="W",
                       help="weight of the image-text alignment in the relevance, 0..1 (default: 0, the text "
                            "prior alone: the image term did not help on a CT the model never saw)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("score", help="score the organs of a CT for symptoms and write the results",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--volume", required=True, metavar="CT",
                        help="CT volume: NIfTI, NRRD/NHDR, MHA/MHD or a DICOM series folder")
    parser.add_argument("--segmentation", metavar="SEG",
                        help="organ label map or .seg.nrrd (default: run TotalSegmentator if installed)")
    parser.add_argument("--label-scheme", choices=("btcv", "totalsegmentator", "amos"),
                        help="label values of a label-map segmentation")
    symptoms = parser.add_mutually_exclusive_group(required=True)
    symptoms.add_argument("--symptom", action="append", metavar="TEXT",
                          help="a symptom in words; repeat for several")
    symptoms.add_argument("--symptoms-file", metavar="FILE", help="text file with one symptom per line")
    parser.add_argument("--output", required=True, metavar="PREFIX",
                        help="output prefix, e.g. out/patient1 (folders are created)")
    parser.add_argument("--preview", action="store_true", help="also write PREFIX.png")
    parser.add_argument("--dicom-seg", action="store_true",
                        help="also write a DICOM SEG (the CT must be a DICOM series folder)")
    parser.add_argument("--no-passages", action="store_true",
                        help="skip the supporting knowledge passages in the JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the output paths")
    add_model_arguments(parser)
    return parser


def read_symptoms_file(path: str | os.PathLike) -> list[str]:
    """Symptoms from a text file, one per line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise SymptomError(f"{path}: no such symptoms file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SymptomError(f"{path}: cannot read the symptoms file as UTF-8 text ({type(exc).__name__})") from exc
    symptoms = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not symptoms:
        raise SymptomError(f"{path}: the symptoms file holds no symptom")
    return symptoms


def totalsegmentator_available() -> bool:
    return shutil.which("TotalSegmentator") is not None


def run_totalsegmentator(volume_path: Path, volume, device: str, log=print) -> dict:
    """Segment the 13 structures with TotalSegmentator (``--fast`` on CPU); returns masks on the CT grid."""
    from ..volume_io import read_organ_masks, write_volume

    log("no --segmentation given: running TotalSegmentator for the 13 structures"
        + (" (--fast on CPU)" if device == "cpu" else ""))
    with tempfile.TemporaryDirectory(prefix="medsora-ts-") as tmp:
        source = Path(tmp) / "ct.nii.gz"
        write_volume(source, volume)
        target = Path(tmp) / "organs.nii.gz"
        command = ["TotalSegmentator", "-i", str(source), "-o", str(target), "--ml", "--roi_subset", *TOTALSEG_ROI]
        if device == "cpu":
            command += ["--fast", "--device", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not target.exists():
            last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise SegmentationError(f"TotalSegmentator failed on {volume_path}: {last[0]}")
        return read_organ_masks(target, volume, "totalsegmentator")


@dataclass
class LoadedCase:
    volume: object
    masks: dict
    inputs: dict
    dicom_series: Path | None


def load_case(volume_path, segmentation_path=None, label_scheme=None, device="cpu", log=print) -> LoadedCase:
    """Read a CT and its organ masks (or segment it with TotalSegmentator), with input checksums."""
    from ..organs import normalize_scheme
    from ..scoring import file_sha256
    from ..volume_io import read_organ_masks, read_volume

    volume_path = Path(volume_path)
    if label_scheme is not None:
        label_scheme = normalize_scheme(label_scheme)
    volume = read_volume(volume_path)
    inputs = {"volume": {"path": str(volume_path), "sha256": file_sha256(volume_path),
                         "shape": list(volume.shape), "spacing_mm": [round(float(s), 4) for s in volume.spacing]}}
    if segmentation_path:
        segmentation_path = Path(segmentation_path)
        masks = read_organ_masks(segmentation_path, volume, label_scheme)
        inputs["segmentation"] = {"path": str(segmentation_path), "sha256": file_sha256(segmentation_path),
                                  "label_scheme": label_scheme}
    elif totalsegmentator_available():
        masks = run_totalsegmentator(volume_path, volume, device, log=log)
        inputs["segmentation"] = {"path": None, "source": "TotalSegmentator", "label_scheme": "totalsegmentator"}
    else:
        raise SegmentationError(
            "no organ segmentation: give --segmentation (a label map with --label-scheme, or a .seg.nrrd), "
            "or install TotalSegmentator (pip install TotalSegmentator) to segment the CT automatically")
    dicom_series = volume_path if volume_path.is_dir() else None
    return LoadedCase(volume=volume, masks=masks, inputs=inputs, dicom_series=dicom_series)


def models_from_args(args):
    from ..scoring import load_models

    return load_models(text_weights=args.text_weights, image_weights=args.image_weights, setting=args.setting,
                       device=args.device, text_encoder=args.text_encoder)


def check_output_prefix(prefix: str | os.PathLike) -> Path:
    prefix = Path(prefix)
    if prefix.name in ("", ".", ".."):
        raise InputFileError(f"--output {prefix}: give a file prefix such as out/patient1, not a folder")
    if prefix.exists() and prefix.is_dir():
        raise InputFileError(f"--output {prefix} is a folder; give a file prefix such as {prefix}/result")
    parent = prefix.parent if str(prefix.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputFileError(f"--output {prefix}: cannot write in {existing}")
    return prefix


def print_table(result, out=None) -> None:
    out = out or sys.stdout
    flag = "" if result.in_domain else "   (out of domain: not an abdominal symptom; relevances are low)"
    print(f"\n{result.symptom}{flag}", file=out)
    print(f"  {'organ':<30} {'relevance':>9} {'text':>6} {'image':>6} {'ml':>8}", file=out)
    for o in result.organs:
        print(f"  {o.display_name:<30} {o.relevance:>9.3f} {o.text_prior:>6.3f} {o.image_score:>6.3f} "
              f"{o.volume_ml:>8.1f}", file=out)
    from ..outputs import findings_caption

    caption = findings_caption(result, limit=8)
    if caption:
        print("\n".join("  " + line for line in caption.splitlines()), file=out)


def run(args) -> int:
    from ..outputs import output_prefixes, write_result
    from ..scoring import IMAGE_WEIGHT, check_symptoms, score_volume

    quiet = args.quiet

    def log(message: str) -> None:
        if not quiet:
            print(f"medsora: {message}", file=sys.stderr, flush=True)

    prefix = check_output_prefix(args.output)
    symptoms = check_symptoms(args.symptom if args.symptom else read_symptoms_file(args.symptoms_file))
    if args.image_weight is not None and not 0.0 <= args.image_weight <= 1.0:
        raise SymptomError(f"--image-weight {args.image_weight} is outside 0..1")
    case = load_case(args.volume, args.segmentation, args.label_scheme, args.device, log=log)
    if args.dicom_seg and case.dicom_series is None:
        raise InputFileError("--dicom-seg needs the CT as a DICOM series folder (--volume DICOM_FOLDER)")
    log(f"{len(case.masks)} organs: {', '.join(case.masks)}")
    log("loading models")
    models = models_from_args(args)
    results = score_volume(case.volume, case.masks, symptoms, models=models,
                           image_weight=IMAGE_WEIGHT if args.image_weight is None else args.image_weight,
                           with_passages=not args.no_passages, progress=lambda fraction, message: log(message))
    for result, out in zip(results, output_prefixes(prefix, len(results))):
        files = write_result(out, result, case.volume, case.masks, inputs=case.inputs, preview=args.preview,
                             dicom_series=case.dicom_series if args.dicom_seg else None)
        if not quiet:
            print_table(result)
        for path in files.values():
            print(f"  wrote {path}" if not quiet else str(path))
    return 0
