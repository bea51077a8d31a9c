"""``medsora serve``: MedSORA in a web browser, on Kitware's trame-slicer."""
from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import tempfile
from pathlib import Path

from ..errors import InputFileError, MedSORAError

DESCRIPTION = """\
Serve MedSORA as a web page: a symptom box with Score, Slicer's slice view of
the CT with the relevance overlay and a 3D view of the organs coloured by
relevance, the results table, the supporting passages, the out-of-domain
warning, and links to download the .seg.nrrd and JSON of each result.

Without --volume the bundled example CT and its organs are shown. The views
render offscreen (no display or GPU needed). Needs the web extra:
pip install "medsora[web]".

Only whoever started the server can use it: the URL printed at start-up
carries a random access token (kept in a cookie after the first visit);
requests without it, from another web site, or naming another host get 403.
One page at a time owns the scene: another browser, or a second tab of the
same browser, sees "in use", and nothing typed in one shows in another. The page
can load CTs only from under --data-root (default: the folder of --volume;
none with the example CT), and offers for download only the files this
server wrote."""

EPILOG = """\
examples:
  medsora serve                                   (example CT on http://127.0.0.1:8080/)
  medsora serve --volume ct.nii.gz --segmentation organs.nii.gz --label-scheme totalsegmentator \\
                --symptom "painless jaundice with pale stools" --port 9000
  medsora serve --volume cases/p1/ct.nii.gz --segmentation cases/p1/seg.nii.gz --label-scheme totalsegmentator \
                --data-root cases                 (the page may load any case under cases/)
Open the URL it prints (http://127.0.0.1:PORT/?token=...). Bind to 127.0.0.1 (the default): another
--host makes the server reachable from the network by anyone who learns the URL and its token."""

#: The example case shipped with the source tree (Testing/Data; see NOTICE).
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "Testing" / "Data"
EXAMPLE_CT = EXAMPLE_DIR / "example_ct_sm.nii.gz"
EXAMPLE_SEG = EXAMPLE_DIR / "example_ct_sm_seg.nii.gz"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("serve", help="serve MedSORA as a web page (needs the web extra)",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volume", metavar="CT", help="CT volume (default: the bundled example CT)")
    parser.add_argument("--segmentation", metavar="SEG",
                        help="organ label map or .seg.nrrd (default with the example CT: its organs)")
    parser.add_argument("--label-scheme", choices=("btcv", "totalsegmentator", "amos"),
                        help="label values of a label-map segmentation")
    parser.add_argument("--symptom", action="append", metavar="TEXT",
                        help="score this symptom before the page opens; repeat for several")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    parser.add_argument("--lifetime", type=float, metavar="SECONDS",
                        help="stop by itself after this many seconds")
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder under which the page may load CTs and segmentations by path (default: the "
                             "folder of --volume; without --volume, loading by path is off)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="folder for the result files offered for download (default: a temporary folder)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device (default: cpu)")
    return parser


def _check(args) -> None:
    from ..validation import check_input_path, check_output_folder

    if not 0 <= args.port <= 65535:
        raise InputFileError(f"--port {args.port} is outside 0..65535")
    if args.lifetime is not None and not args.lifetime > 0:
        raise InputFileError(f"--lifetime {args.lifetime:g} must be a positive number of seconds")
    if args.segmentation and not args.volume:
        raise InputFileError("--segmentation needs --volume (without --volume the example CT and its organs are used)")
    if args.volume:
        check_input_path(args.volume, "CT file or folder")
    if args.segmentation:
        check_input_path(args.segmentation, "segmentation file")
    if not args.volume and not (EXAMPLE_CT.is_file() and EXAMPLE_SEG.is_file()):
        raise InputFileError(f"the example CT is not in {EXAMPLE_DIR} (an installed copy without the source "
                             "tree): give --volume and --segmentation")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise InputFileError(f"--data-root {args.data_root}: no such folder")
    if args.output_dir:
        if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
            raise InputFileError(f"--output-dir {args.output_dir} is not a folder")
        check_output_folder(args.output_dir, option="--output-dir")
    check_listen(args.host, args.port)


def check_listen(host: str, port: int) -> None:
    """``host`` must resolve and ``port`` be free on it (probed by binding, then released)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputFileError(f"--host {host}: not an address of this machine (cannot resolve it: "
                             f"{getattr(exc, 'strerror', None) or exc})") from None
    family, kind, proto, _, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputFileError(f"--port {port}: already in use on {host}; choose another port "
                                 "(--port 0 picks a free one)") from None
        raise InputFileError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    finally:
        probe.close()


def reach_warning(host: str) -> str | None:
    """A warning naming what becomes reachable when ``host`` is not a loopback address, else None."""
    from ..web.access import is_loopback

    if is_loopback(host):
        return None
    where = "every network interface of this machine" if host.strip() in ("0.0.0.0", "::", "") else host
    return (f"warning: --host {host} listens on {where}: anyone on the network who learns the URL and its "
            "token can see this CT, the symptoms typed and the results, and load the CTs under --data-root")


def run(args) -> int:
    from ..scoring import check_symptoms

    _check(args)
    symptoms = check_symptoms(args.symptom) if args.symptom else None
    try:
        from ..web import app as web_app
    except ImportError as exc:
        raise MedSORAError(f"medsora serve needs the web extra ({exc.name or exc} is missing): "
                           'pip install "medsora[web]"') from exc
    from ..web.session import WebSession

    def log(message: str) -> None:
        print(f"medsora: {message}", file=sys.stderr, flush=True)

    warning = reach_warning(args.host)
    if warning:
        log(warning)
    data_root = args.data_root or (os.path.dirname(os.path.abspath(args.volume)) if args.volume else None)
    with tempfile.TemporaryDirectory(prefix="medsora-serve-") as tmp:
        output_dir = Path(args.output_dir) if args.output_dir else Path(tmp)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputFileError(f"--output-dir {output_dir}: cannot create it ({exc.strerror or exc})") from None
        session = WebSession(output_dir, device=args.device)
        if args.volume:
            session.load(args.volume, args.segmentation, args.label_scheme, log=log)
        else:
            session.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=log)
        log(f"{session.case_name}: {len(session.case.masks)} organs; loading models")
        session.models()
        scored = None
        if symptoms:
            scored = session.score(symptoms, progress=lambda fraction, message: log(message))
        return web_app.serve(session, host=args.host, port=args.port, lifetime=args.lifetime, scored=scored,
                             data_root=data_root)
