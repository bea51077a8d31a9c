"""``medsora score``: score the organs of a CT for one or more symptoms and write the results."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputFileError, SymptomError
from ..session import ScoringSession, ScoringSettings, check_outputs

DESCRIPTION = """\
Score the organs of a CT for one or more symptoms.

MedSORA reads the CT and its organ segmentation, measures each organ once,
and for every symptom writes (PREFIX, or PREFIX_1, PREFIX_2 ... for several):
  PREFIX.seg.nrrd  one segment per organ, coloured by relevance, with SNOMED
                   terminology and the tag MedSORA.Relevance (open in 3D Slicer)
  PREFIX.json      symptom, in_domain, contrast_phase, organs sorted by
                   relevance (relevance, text_prior, image_score (null
                   at image weight 0), finding_boost and why, measurements, findings against
                   cited reference ranges), supporting knowledge passages,
                   model versions, input SHA-256
  PREFIX.png       with --preview: slices through the most relevant organ
                   and a bar chart
  PREFIX_seg.dcm   with --dicom-seg (DICOM series input): a DICOM SEG
  PREFIX_sr.dcm    with --dicom-sr (DICOM series input; writes the SEG too):
                   a DICOM SR (TID 1500) of the measurements, contrast phase
                   and abnormal findings, referencing the series and the SEG

Reference ranges follow the patient's age and sex where the cited sources
give them: --age/--sex, else the DICOM header (PatientAge, PatientSex); when
unknown, the adult range, and each finding says so.

Organ masks come from --segmentation: a label map (give --label-scheme) or a
Slicer .seg.nrrd (segments matched by name or terminology). Without it,
TotalSegmentator is run for the 13 structures when it is installed."""

EPILOG = """\
examples:
  medsora score --volume Testing/Data/example_ct_sm.nii.gz \\
      --segmentation Testing/Data/example_ct_sm_seg.nii.gz --label-scheme totalsegmentator \\
      --symptom "painless jaundice with pale stools and weight loss" --output out/example --preview
  medsora score --volume ct_dicom/ --segmentation organs.seg.nrrd \\
      --symptoms-file symptoms.txt --output out/patient7 --dicom-sr --age 64 --sex F"""

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing the models, the device and the fusion (shared with ``medsora batch``).

    Their defaults are :class:`MedSORALib.session.ScoringSettings`'s (:func:`settings_from_args`).
    """
    defaults = ScoringSettings()
    group = parser.add_argument_group("models")
    group.add_argument("--device", choices=("cpu", "cuda"), help=f"torch device (default: {defaults.device})")
    group.add_argument("--setting", choices=("full11", "paper7"),
                       help="text classes: our 11 (all 13 structures, default) or the paper's 7")
    group.add_argument("--text-weights", metavar="DIR", help="text model folder (default: shipped weights)")
    group.add_argument("--image-weights", metavar="DIR", help="image/alignment model folder (default: shipped)")
    group.add_argument("--text-encoder", metavar="DIR",
                       help="local sentence-encoder folder (default: bundled all-MiniLM-L6-v2)")
    group.add_argument("--image-weight", type=float, default=None, metavar="W",
                       help=f"weight of the image-text alignment in the relevance, 0..1 (default: "
                            f"{defaults.image_weight:g}, the text prior alone, and the organs are not encoded: the "
                            f"image term did not help on a CT the model never saw)")


def settings_from_args(args) -> ScoringSettings:
    """The scoring settings of ``score`` or ``batch``: the options given, the defaults for the others."""
    import math

    weight = args.image_weight
    if weight is not None and not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise SymptomError(f"--image-weight {weight} is outside 0..1")
    return ScoringSettings().replace(device=args.device, setting=args.setting, text_weights=args.text_weights,
                                     image_weights=args.image_weights, text_encoder=args.text_encoder,
                                     image_weight=weight, passages=False if args.no_passages else None,
                                     preview=True if args.preview else None)


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
    parser.add_argument("--dicom-sr", action="store_true",
                        help="also write a DICOM SR of the measurements and findings, and the DICOM SEG it "
                             "references (the CT must be a DICOM series folder)")
    add_patient_arguments(parser)
    parser.add_argument("--no-passages", action="store_true",
                        help="skip the supporting knowledge passages in the JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the output paths")
    add_model_arguments(parser)
    return parser


def add_patient_arguments(parser: argparse.ArgumentParser) -> None:
    """``--age`` and ``--sex``, which choose the reference ranges of the findings."""
    group = parser.add_argument_group("patient (reference ranges; default: the DICOM header, else unknown)")
    group.add_argument("--age", metavar="YEARS", help="age in years (e.g. 64) or a DICOM age (064Y)")
    group.add_argument("--sex", metavar="F|M|O", help="F, M, or O (other/unknown)")


def patient_from_args(args, dicom_series=None):
    """The patient of ``--age``/``--sex``, completed from the DICOM header of ``dicom_series``."""
    from ..patient import Patient, patient_from_dicom

    given = Patient.parse(getattr(args, "age", None), getattr(args, "sex", None), "command line")
    return given.merged(patient_from_dicom(dicom_series)) if dicom_series is not None else given


def print_table(result, out=None) -> None:
    out = out or sys.stdout
    from ..diagnoses import differential_lines, scope_flag

    flag = scope_flag(result.scope, result.outside)
    print(f"\n{result.symptom}{flag}", file=out)
    print(f"  {'organ':<30} {'relevance':>9} {'text':>6} {'image':>6} {'ml':>8}", file=out)
    for o in result.organs:
        image = "-" if o.image_score is None else f"{o.image_score:.3f}"
        print(f"  {o.display_name:<30} {o.relevance:>9.3f} {o.text_prior:>6.3f} {image:>6} "
              f"{o.volume_ml:>8.1f}", file=out)
    from ..preview import findings_caption

    caption = findings_caption(result, limit=8)
    if caption:
        print("\n".join("  " + line for line in caption.splitlines()), file=out)
    for line in differential_lines(result.differential):
        print("  " + line, file=out)


def run(args) -> int:
    from ..files import read_symptom_file
    from ..scoring import check_symptoms

    quiet = args.quiet

    def log(message: str) -> None:
        if not quiet:
            print(f"medsora: {message}", file=sys.stderr, flush=True)

    settings = settings_from_args(args)
    symptoms = check_symptoms(args.symptom if args.symptom else read_symptom_file(args.symptoms_file))
    prefix = check_outputs(args.output, len(symptoms), [args.volume, args.segmentation, args.symptoms_file],
                           preview=settings.preview, dicom_seg=args.dicom_seg, dicom_sr=args.dicom_sr)
    patient_from_args(args)  # a bad --age or --sex fails before any work
    folder = Path(args.volume) if Path(args.volume).is_dir() else None
    session = ScoringSession(settings, cases=0)  # one case, read once: nothing to keep
    case = session.open(args.volume, args.segmentation, args.label_scheme, log=log,
                        patient=patient_from_args(args, folder))
    for flag, wanted in (("--dicom-seg", args.dicom_seg), ("--dicom-sr", args.dicom_sr)):
        if wanted and case.dicom_series is None:
            raise InputFileError(f"{flag} needs the CT as a DICOM series folder (--volume DICOM_FOLDER)")
    log(f"{len(case.masks)} organs: {', '.join(case.masks)}")
    log("loading models")
    session.load()
    results = session.score(case, symptoms, progress=lambda fraction, message: log(message))
    for result, files in zip(results, session.write(case, results, prefix, dicom_seg=args.dicom_seg,
                                                         dicom_sr=args.dicom_sr)):
        if not quiet:
            print_table(result)
        for path in files.values():
            print(f"  wrote {path}" if not quiet else str(path))
    return 0
