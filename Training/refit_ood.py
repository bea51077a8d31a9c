"""Refit the out-of-domain detector of trained text models without retraining their MLPs.

The detector (:mod:`MedSORALib.text.ood`) depends on the trained model only through its features; its
non-abdominal neighbour bank (``ood.out_bank``) and its logistic regression come from the calibration texts.
This program rebuilds both from the current calibration data, exactly as ``Training/train_text.py`` does at the end
of training, and writes the folder back (``config.json`` and ``model.safetensors``; the anchors, MLPs, training
bank and knowledge terms are copied unchanged):

* abdominal: the dataset's validation split for the setting (the extra datasets' validation rows included, as in
  training) and the ``calibration`` rows of ``MedSORALib/resources/ood/abdominal_queries.jsonl``;
* non-abdominal: the ``calibration`` rows of ``MedSORALib/resources/ood/non_abdominal.jsonl``.

``--word-channel off`` (the default) stores ``ood.word_channel: false``: the text model's in-domain decision is
then the logistic detector's alone, without the word channel of :mod:`MedSORALib.text.ood_lexicon`.

No development set is read. The held-out ``test`` rows are measured and stored as training does
(``config["ood"]["heldout"]``).

    python Training/refit_ood.py [--weights DIR] [--settings full11 [paper7]] [--output DIR] [--word-channel on|off]
        [--keep-detector] [--extra-abdominal FILE ...] [--extra-non-abdominal FILE ...]

The candidate rows of ``Training/data/ood_candidates/`` (non-abdominal presentations in case, terse and lay
registers that mention abdominal words, on topics apart from the dev sets', and outside-region catalogue texts;
abdominal chest-pain and leg-swelling presentations of the oesophagus, aorta and inferior vena cava) go in with the
``--extra-*`` options; they are not shipped (docs/evaluation.md, "Non-abdominal presentations", says why).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def refit(reasoner, setting: str, dataset_rows: list[dict], word_channel: bool = False,
          extra_abdominal: list[dict] = (), extra_non_abdominal: list[dict] = ()):
    """Rebuild ``reasoner``'s non-abdominal bank and detector from the calibration texts (plus the ``calibration``
    rows of the extra lists, candidate rows not shipped); returns the detector's configuration."""
    import numpy as np

    from medsora_training.text.fitting import ood_heldout_report, rows_for_setting
    from MedSORALib.text.ood import OutOfDomainDetector, load_ood_texts

    training = reasoner.config.get("training", {}).get("config", {})
    extra_paths = []
    if setting in (training.get("product") or {}).get("settings", []):
        extra_paths = (training.get("product") or {}).get("extra_datasets", [])
    extra = []
    for name in extra_paths:
        extra += read_rows(Path(name) if Path(name).is_absolute() else REPO / name)
    val_rows, _ = rows_for_setting([r for r in dataset_rows + extra if r.get("split") == "val"], setting)
    test_rows, _ = rows_for_setting([r for r in dataset_rows + extra if r.get("split") == "test"], setting,
                                    multi_label=True)
    queries = load_ood_texts("abdominal_queries") + list(extra_abdominal)
    other = load_ood_texts("non_abdominal") + list(extra_non_abdominal)
    in_texts = [r["text"] for r in val_rows] + [r["text"] for r in queries if r["split"] == "calibration"]
    out_texts = [r["text"] for r in other if r["split"] == "calibration"]
    in_emb, out_emb = reasoner.encode(in_texts), reasoner.encode(out_texts)
    reasoner.out_bank = np.asarray(out_emb, dtype=np.float32)
    feats_in = reasoner.ood_features(in_emb, texts=in_texts)
    feats_out = reasoner.ood_features(out_emb, leave_out_non_abdominal=True, texts=out_texts)
    detector = OutOfDomainDetector.fit(
        np.concatenate([feats_in, feats_out]),
        np.concatenate([np.ones(len(in_texts), bool), np.zeros(len(out_texts), bool)]),
        k=reasoner.detector.k,
    )
    reasoner.detector = detector
    held_in = [r["text"] for r in test_rows] + [r["text"] for r in queries if r["split"] == "test"]
    held_out = [r["text"] for r in other if r["split"] == "test"]
    heldout = ood_heldout_report(  # the neural detector alone, as training reports it
reasoner, reasoner.encode(held_in), reasoner.encode(held_out), held_in, held_out)
    config = detector.to_config()
    config["word_channel"] = bool(word_channel)
    reasoner.word_channel = bool(word_channel)
    config["heldout"] = heldout
    config["refit"] = {"program": "Training/refit_ood.py", "n_in": len(in_texts), "n_out": len(out_texts)}
    reasoner.config["ood"] = config
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="text weights folder (default: the shipped ones)")
    parser.add_argument("--settings", nargs="+", default=["full11"], help="default full11 (the product model)")
    parser.add_argument("--output", default=None, help="write here (default: in place)")
    parser.add_argument("--word-channel", choices=["on", "off"], default="off",
                        help="let the word channel adjust p_in (default off: on the tune half of the dev sets it "
                        "let non-abdominal presentations through and kept no more abdominal ones; docs/evaluation.md)")
    parser.add_argument("--keep-detector", action="store_true",
                        help="only store --word-channel; keep the stored bank and logistic detector as they are")
    parser.add_argument("--extra-abdominal", nargs="*", default=[], help="JSONL files of further abdominal rows")
    parser.add_argument("--extra-non-abdominal", nargs="*", default=[], help="JSONL files of further non-abdominal rows")
    args = parser.parse_args(argv)

    from MedSORALib.files import read_jsonl
    from MedSORALib.knowledge.symptom_texts import DATASET_PATH
    from MedSORALib.text.reasoning import TextReasoner, default_weights_dir

    source = Path(args.weights) if args.weights else default_weights_dir()
    output = Path(args.output) if args.output else source
    rows = read_jsonl(DATASET_PATH)
    for setting in args.settings:
        reasoner = TextReasoner.load(source, setting=setting)
        if output != source:
            shutil.copytree(source / setting, output / setting, dirs_exist_ok=True)
        if args.keep_detector:
            from MedSORALib.files import atomic_write_text

            reasoner.config["ood"]["word_channel"] = args.word_channel == "on"
            (output / setting).mkdir(parents=True, exist_ok=True)
            atomic_write_text(output / setting / "config.json", json.dumps(reasoner.config, indent=2) + "\n")
            print(f"[{setting}] detector kept (threshold p_in >= {reasoner.detector.threshold:.3f}); word channel "
                  f"{args.word_channel}")
            continue
        config = refit(reasoner, setting, rows, word_channel=args.word_channel == "on",
                       extra_abdominal=[r for f in args.extra_abdominal for r in read_rows(f)],
                       extra_non_abdominal=[r for f in args.extra_non_abdominal for r in read_rows(f)])
        reasoner.save(output / setting)
        cal, held = config["calibration"], config["heldout"]
        print(f"[{setting}] {config['refit']['n_in']} abdominal, {config['refit']['n_out']} non-abdominal calibration "
              f"texts: threshold p_in >= {config['threshold']:.3f}, calibration TPR {cal['tpr']:.3f} FPR {cal['fpr']:.3f}; "
              f"held-out TPR {held['tpr']:.3f} FPR {held['fpr']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
