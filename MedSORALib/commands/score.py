"""``medsora score``: score the organs of a CT for one or more symptoms and write the results."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..cases import load_case
from ..errors import InputFileError, SymptomError

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
    symptoms.add_argument("--symptoms-file", metavar="FILE", help="text file with one symptom per line ('-' = standard input; "
                          "blank lines and lines starting with # are skipped)")
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


def models_from_args(args):
    from ..scoring import load_models

    return load_models(text_weights=args.text_weights, image_weights=args.image_weights, setting=args.setting,
                       device=args.device, text_encoder=args.text_encoder)


def check_output_prefix(prefix: str | os.PathLike) -> Path:
    """A usable output prefix: not a folder, and its folder creatable and writable (probed, not os.access)."""
    from ..validation import check_output_folder

    prefix = Path(prefix)
    if prefix.name in ("", ".", ".."):
        raise InputFileError(f"--output {prefix}: give a file prefix such as out/patient1, not a folder")
    if prefix.exists() and prefix.is_dir():
        raise InputFileError(f"--output {prefix} is a folder; give a file prefix such as {prefix}/result")
    check_output_folder(prefix.parent if str(prefix.parent) else Path("."))
    return prefix


def output_files(prefix: Path, count: int, preview: bool = False, dicom_seg: bool = False) -> list[Path]:
    """Every file ``medsora score`` writes for ``count`` symptoms."""
    from ..result_files import output_prefixes

    suffixes = [".seg.nrrd", ".json"] + ([".png"] if preview else []) + (["_seg.dcm"] if dicom_seg else [])
    return [p.with_name(p.name + s) for p in output_prefixes(prefix, count) for s in suffixes]


def print_table(result, out=None) -> None:
    out = out or sys.stdout
    flag = "" if result.in_domain else "   (out of domain: not an abdominal symptom; relevances are low)"
    print(f"\n{result.symptom}{flag}", file=out)
    print(f"  {'organ':<30} {'relevance':>9} {'text':>6} {'image':>6} {'ml':>8}", file=out)
    for o in result.organs:
        print(f"  {o.display_name:<30} {o.relevance:>9.3f} {o.text_prior:>6.3f} {o.image_score:>6.3f} "
              f"{o.volume_ml:>8.1f}", file=out)
    from ..preview import findings_caption

    caption = findings_caption(result, limit=8)
    if caption:
        print("\n".join("  " + line for line in caption.splitlines()), file=out)


def run(args) -> int:
    from ..result_files import output_prefixes, write_result
    from ..files import read_symptom_file
    from ..scoring import IMAGE_WEIGHT, check_symptoms, score_volume

    quiet = args.quiet

    def log(message: str) -> None:
        if not quiet:
            print(f"medsora: {message}", file=sys.stderr, flush=True)

    from ..validation import check_outputs_spare_inputs

    prefix = check_output_prefix(args.output)
    symptoms = check_symptoms(args.symptom if args.symptom else read_symptom_file(args.symptoms_file))
    check_outputs_spare_inputs(output_files(prefix, len(symptoms), args.preview, args.dicom_seg),
                               [args.volume, args.segmentation, args.symptoms_file])
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
