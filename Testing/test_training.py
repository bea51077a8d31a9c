"""Training programs: dataset adapters, patient split, optimizer checkpoints, a tiny run with resume, ablation table."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from MedSORALib.errors import InputFileError  # noqa: E402
from MedSORALib.organs import ORGANS  # noqa: E402
from medsora_training import image_data as datasets  # noqa: E402

torch.set_num_threads(1)


def _write_case(path_img: Path, path_lab: Path | None, labels: np.ndarray, affine=None):
    affine = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    ct = np.where(labels > 0, 50.0, -100.0).astype(np.int16)
    path_img.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, affine), str(path_img))
    if path_lab is not None:
        path_lab.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(path_lab))


def _labels(values: dict[str, int]) -> np.ndarray:
    lab = np.zeros((20, 20, 10), np.uint8)
    for i, (_, value) in enumerate(values.items()):
        lab[2 + 4 * i: 5 + 4 * i, 5:15, 2:8] = value
    return lab


def test_btcv_adapter_reads_dataset_json_and_btcv_labels(tmp_path):
    root = tmp_path / "btcv"
    lab = _labels({"liver": ORGANS["liver"].btcv_label, "esophagus": ORGANS["esophagus"].btcv_label})
    for n in (1, 2):
        _write_case(root / "imagesTr" / f"img000{n}.nii.gz", root / "labelsTr" / f"label000{n}.nii.gz", lab)
    (root / "dataset_0.json").write_text(json.dumps({
        "training": [{"image": "imagesTr/img0001.nii.gz", "label": "labelsTr/label0001.nii.gz"}],
        "validation": [{"image": "imagesTr/img0002.nii.gz", "label": "labelsTr/label0002.nii.gz"}]}))
    cases = datasets.btcv_cases(root)
    assert [c.patient_id for c in cases] == ["1", "2"]
    volume, masks = cases[0].load()
    assert set(masks) == {"liver", "esophagus"}  # BTCV 5 is the oesophagus, 6 the liver
    assert masks["liver"].sum() == 3 * 10 * 6 and volume.shape == (20, 20, 10)
    assert len(datasets.btcv_cases(root, section="validation")) == 1
    (root / "dataset_0.json").unlink()
    assert len(datasets.btcv_cases(root)) == 2  # paired by number without the listing
    with pytest.raises(InputFileError):
        datasets.btcv_cases(tmp_path / "empty")


def test_totalsegmentator_adapter_reads_one_file_per_organ(tmp_path):
    root = tmp_path / "ts"
    lab = _labels({"spleen": 1, "kidney_left": 2})
    _write_case(root / "s0001" / "ct.nii.gz", None, lab)
    seg = root / "s0001" / "segmentations"
    seg.mkdir(parents=True)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image((lab == 1).astype(np.uint8), affine), str(seg / "spleen.nii.gz"))
    nib.save(nib.Nifti1Image((lab == 2).astype(np.uint8), affine), str(seg / "kidney_left.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros_like(lab), affine), str(seg / "liver.nii.gz"))  # empty: left out
    nib.save(nib.Nifti1Image((lab == 1).astype(np.uint8), affine), str(seg / "femur_left.nii.gz"))  # not ours
    (root / "not_a_case").mkdir()
    cases = datasets.totalsegmentator_cases(root)
    assert [c.case_id for c in cases] == ["s0001"]
    _, masks = cases[0].load()
    assert list(masks) == ["spleen", "kidney_left"]
    assert masks["spleen"].sum() == 180


def test_generic_pairs_and_patient_split(tmp_path):
    lab = _labels({"liver": 5})
    pairs = []
    for i in range(12):
        img, lbl = tmp_path / f"c{i}.nii.gz", tmp_path / f"c{i}_seg.nii.gz"
        _write_case(img, lbl, lab)
        pairs.append((img, lbl, f"patient{i // 3}"))  # 3 cases per patient
    cases = datasets.labelmap_cases(pairs, "totalsegmentator")
    _, masks = cases[0].load()
    assert list(masks) == ["liver"]
    splits = datasets.split_by_patient(cases, (0.5, 0.25, 0.25), seed=3)
    owners = {}
    for name, part in splits.items():
        for c in part:
            owners.setdefault(c.patient_id, set()).add(name)
    assert all(len(s) == 1 for s in owners.values())
    assert sorted(len(v) for v in splits.values()) == [3, 3, 6]
    assert splits == datasets.split_by_patient(cases, (0.5, 0.25, 0.25), seed=3)
    with pytest.raises(InputFileError):
        datasets.labelmap_cases([(tmp_path / "nope.nii.gz", tmp_path / "c0_seg.nii.gz")], "btcv")


def test_optimizer_state_round_trip_without_pickle(tmp_path):
    from medsora_training.checkpoint import optimizer_from_safetensors, optimizer_to_safetensors

    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.rand(5, 4)).pow(2).sum().backward()
        opt.step()
    blob, meta = optimizer_to_safetensors(opt)
    json.loads(meta)
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    optimizer_from_safetensors(fresh, blob, meta)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for name, value in a["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][pid][name]))


@pytest.fixture(scope="module")
def tiny_run_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rows = []
    texts = {"liver": ["yellow skin and dark urine", "pain under the right ribs with jaundice"],
             "kidney": ["blood in the urine and flank pain", "pain in the loin radiating to the groin"],
             "pancreas": ["severe upper abdominal pain radiating to the back after alcohol"]}
    for organ, items in texts.items():
        for i, t in enumerate(items):
            for split in ("train", "test"):
                rows.append({"id": f"{organ}-{i}-{split}", "text": t, "organ": organ, "organs": [organ],
                             "split": split})
    (root / "texts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = {
        "seed": 0, "threads": 1,
        "model": {"preset": "tiny", "mode": "xattn",
                  "overrides": {"D": 8, "H": 32, "W": 32, "slice_layers": 1, "volume_layers": 1}},
        "crop": {"spacing": [3.0, 3.0, 3.0]},
        "data": {"phantoms": {"n": 3, "seed": 7, "shape": [80, 72, 56]}, "split": [0.67, 0.33, 0.0]},
        "texts": {"dataset": str(root / "texts.jsonl")},
        "stages": {"image": {"epochs": 1, "batch_size": 13, "lr": 0.001},
                   "alignment": {"epochs": 1, "texts_per_volume": 6, "volumes_per_step": 1, "lr": 0.001}},
        "eval": {"every": 1},
    }
    return root, cfg


def test_tiny_run_writes_metrics_checkpoints_and_resumes(tiny_run_config):
    from medsora_training.train import main

    root, cfg = tiny_run_config
    (root / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = root / "run"
    assert main(["--config", str(root / "run.yaml"), "--output", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert [h["stage"] for h in metrics["history"]] == ["image", "alignment"]
    assert all(np.isfinite(h["loss"]) for h in metrics["history"]) and "align" in metrics["history"][1]
    for key in ("rank1", "rank2", "rank3", "mAP", "organ_accuracy"):
        assert key in metrics["eval"]
    assert metrics["eval"]["n_texts"] == 5 and 0 <= metrics["eval"]["rank1"] <= 1  # fractions
    with open(out / "log.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
    files = {p.name for p in (out / "checkpoint").iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "optimizer.json", "state.json"} <= files
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in out.rglob("*"))

    from MedSORALib.image.model import ImageTextModel

    final = ImageTextModel.load(out / "model")
    assert final.info()["trained_on"]["train"]["phantoms"] == 2

    # Resume with one more alignment epoch: the count continues at 3 and the first two rows are kept.
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["stages"]["alignment"]["epochs"] = 2
    (root / "run2.yaml").write_text(yaml.safe_dump(cfg2))
    assert main(["--config", str(root / "run2.yaml"), "--output", str(out), "--resume", "--no-progress"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == metrics["history"]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3


def test_train_help_reads_like_docs():
    done = subprocess.run([sys.executable, str(REPO / "Training" / "train.py"), "--help"],
                          capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert done.returncode == 0
    for word in ("--config", "--output", "--resume", "--device", "metrics.json", "InfoNCE"):
        assert word in done.stdout


def test_configs_parse_and_name_their_stages():
    from medsora_training.train import load_config

    for name in ("cpu_smoke", "paper_gpu", "ablation_2d", "ablation_3d", "ablation_concat", "ablation_xattn",
                 "default_image_weights"):
        cfg = load_config(REPO / "Training" / "configs" / f"{name}.yaml")
        assert cfg["stages"]["image"]["epochs"] > 0, name
    paper = load_config(REPO / "Training" / "configs" / "paper_gpu.yaml")
    assert paper["model"]["preset"] == "large" and paper["amp"] in ("bf16", "fp16")
    assert paper["stages"]["alignment"]["temperature"] == 0.1
    for mode in ("2d", "3d", "concat", "xattn"):
        assert load_config(REPO / "Training" / "configs" / f"ablation_{mode}.yaml")["model"]["mode"] == mode


def test_ablation_table_format():
    from Training.ablation import markdown_table

    # train() reports fractions (medsora_training.text.metrics); the table shows them in percent.
    table = markdown_table({"2d": {"rank1": 0.75, "rank2": 0.8607, "rank3": 0.9429, "mAP": 0.7153,
                                   "organ_accuracy": 0.5},
                            "xattn": {"rank1": 0.775, "rank2": 0.8964, "rank3": 0.9485, "mAP": 0.7346,
                                      "organ_accuracy": 0.75}})
    lines = table.strip().splitlines()
    assert lines[0].startswith("| setting | Rank-1 (%) | Rank-2 (%) | Rank-3 (%) | mAP (%) |")
    assert lines[2] == "| 2D only | 75.00 | 86.07 | 94.29 | 71.53 | 50.00 |"
    assert lines[3].startswith("| 2D-3D cross-attention | 77.50 | 89.64")


def test_symptom_texts_raise_instead_of_switching_source(tmp_path, monkeypatch):
    from MedSORALib.errors import InputFileError
    from MedSORALib.knowledge import symptom_texts as knowledge_dataset

    rows, source = datasets.load_symptom_texts("test")
    assert source == "MedSORALib.knowledge.symptom_texts"
    assert rows == [datasets._normalise_row(r) for r in knowledge_dataset.load_dataset("test")] and len(rows) > 400
    with pytest.raises(InputFileError, match="cannot be read"):
        datasets.load_symptom_texts("train", tmp_path / "absent.jsonl")
    only_train = tmp_path / "texts.jsonl"
    only_train.write_text(json.dumps({"id": "a", "text": "pale stools", "organ": "liver", "split": "train"}) + "\n")
    with pytest.raises(InputFileError, match="the test split holds no text"):
        datasets.load_symptom_texts("test", only_train)

    def missing(split):
        raise FileNotFoundError("symptom_texts.jsonl")

    # Without the shipped dataset, training stops: no silent switch to the team observations.
    monkeypatch.setattr(knowledge_dataset, "load_dataset", missing)
    with pytest.raises(InputFileError, match="medsora dataset build"):
        datasets.load_symptom_texts("train")


def test_btcv_validation_list_stays_the_validation_set(tmp_path):
    from medsora_training.train import DEFAULTS, build_cases, deep_update

    root = tmp_path / "btcv"
    listing = {"training": [], "validation": []}
    for number in range(1, 9):
        image, label = f"imagesTr/img{number:04d}.nii.gz", f"labelsTr/label{number:04d}.nii.gz"
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        (root / image).write_bytes(b"")  # only listed here, never read
        (root / label).write_bytes(b"")
        listing["validation" if number in (3, 7) else "training"].append({"image": image, "label": label})
    (root / "dataset_0.json").write_text(json.dumps(listing))
    cfg = deep_update(DEFAULTS, {"data": {"btcv": str(root), "split": [0.5, 0.5, 0.0]}})
    splits = build_cases(cfg)
    patients = {name: sorted(int(c.patient_id) for c in splits[name]) for name in ("train", "val", "test")}
    # The standard split as listed: data.split (half to validation here) does not re-divide BTCV's lists.
    assert patients == {"train": [1, 2, 4, 5, 6, 8], "val": [3, 7], "test": []}
    # Phantoms in the same run are split by data.split; the BTCV lists stay where they are.
    mixed = build_cases(deep_update(cfg, {"data": {"phantoms": {"n": 4, "seed": 50}}}))
    assert sorted(int(c.patient_id) for c in mixed["val"] if c.source == "btcv") == [3, 7]
    assert sorted(int(c.patient_id) for c in mixed["train"] if c.source == "btcv") == [1, 2, 4, 5, 6, 8]
    assert [len([c for c in mixed[n] if c.source == "phantom"]) for n in ("train", "val")] == [2, 2]


def test_mixed_precision_on_cpu_says_it_trains_in_float32(capsys):
    from MedSORALib.errors import MedSORAError
    from medsora_training.train import mixed_precision

    on, dtype, precision = mixed_precision("bf16", torch.device("cpu"))
    assert (on, dtype, precision) == (False, torch.float32, "float32")
    assert "float32" in capsys.readouterr().out
    assert mixed_precision("none", torch.device("cpu"))[2] == "float32"
    with pytest.raises(MedSORAError, match="amp"):
        mixed_precision("fp8", torch.device("cpu"))


def test_text_stage_is_kept_on_resume_only_when_fitted_from_the_same_inputs(tmp_path, monkeypatch):
    import medsora_training.train_text
    from medsora_training.train import DEFAULTS, TEXT_STAGE_STAMP, deep_update, run_text_stage, text_stage_inputs

    fits = []

    def fit(argv):  # stands in for the minutes-long text fitting; writes what it writes
        out = Path(argv[argv.index("--output") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_summary.json").write_text("{}")
        fits.append(argv)
        return 0

    monkeypatch.setattr(medsora_training.train_text, "main", fit)
    config = tmp_path / "text.yaml"
    config.write_text((REPO / "Training" / "configs" / "text.yaml").read_text())
    cfg = deep_update(DEFAULTS, {"stages": {"text": {"enabled": True, "config": str(config)}}})
    run = tmp_path / "run"
    trained = {"status": "trained", "output": str(run / "text")}
    kept = {"status": "kept", "output": str(run / "text")}

    assert run_text_stage(cfg, run, resume=False) == trained and len(fits) == 1
    stamp = json.loads((run / "text" / TEXT_STAGE_STAMP).read_text())
    assert stamp == text_stage_inputs(config) and set(stamp) == {"config", "dataset", "ood", "knowledge"}
    assert run_text_stage(cfg, run, resume=True) == kept and len(fits) == 1
    assert run_text_stage(cfg, run, resume=False) == trained and len(fits) == 2  # a fresh run fits again
    # Another text configuration: the models on disk no longer match it, so a resume fits them again.
    config.write_text(config.read_text().replace("margin: 0.8", "margin: 0.7"))
    assert run_text_stage(cfg, run, resume=True) == trained and len(fits) == 3
    assert run_text_stage(cfg, run, resume=True) == kept and len(fits) == 3
    # Models without a record of their inputs are not trusted either.
    (run / "text" / TEXT_STAGE_STAMP).unlink()
    assert run_text_stage(cfg, run, resume=True) == trained and len(fits) == 4

    missing = deep_update(cfg, {"stages": {"text": {"config": str(tmp_path / "none.yaml")}}})
    assert run_text_stage(missing, run, resume=False)["status"] == "skipped"
    assert run_text_stage(DEFAULTS, run, resume=False) == {"status": "disabled"} and len(fits) == 4


def test_missing_training_data_stops_the_run_before_the_text_stage(tmp_path, monkeypatch):
    import medsora_training.train_text
    from MedSORALib.errors import MedSORAError
    from medsora_training.train import DEFAULTS, deep_update, train

    fits = []
    monkeypatch.setattr(medsora_training.train_text, "main", lambda argv: fits.append(argv) or 0)
    cfg = deep_update(DEFAULTS, {"threads": 1, "stages": {"text": {"enabled": True}, "image": {"epochs": 1}},
                                 "model": {"overrides": {"D": 8, "H": 32, "W": 32}}})
    with pytest.raises(MedSORAError, match="no training cases"):
        train(cfg, tmp_path / "run", show_progress=False)
    assert fits == [] and not (tmp_path / "run" / "text").exists()


def test_augmentation_runs_outside_autocast_in_both_steps(monkeypatch):
    """bf16 autocast on the forward only: the augmentation's sampling grid and output stay float32."""
    import medsora_training.image.augment as augment
    from MedSORALib.image.crops import CropConfig
    from MedSORALib.image.encoder import encoder_config
    from MedSORALib.image.losses import OrganClassificationLoss, OrganInfoNCE
    from MedSORALib.image.model import ImageTextModel
    from MedSORALib.organs import STRUCTURES, structure_class
    from medsora_training.train import RunData, Step, alignment_step, image_step

    seen = []
    real = augment.augment_crops

    def recording(crops, config, generator=None):
        out = real(crops, config, generator)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    monkeypatch.setattr(augment, "augment_crops", recording)
    torch.manual_seed(0)
    model = ImageTextModel(encoder_config("tiny", D=8, H=32, W=32, slice_layers=1, volume_layers=1),
                           CropConfig(D=8, H=32, W=32), list(STRUCTURES))
    crops, labels = torch.rand(4, 8, 32, 32).half(), torch.tensor([0, 5, 6, 10])
    rows = [{"text": t, "organ": c} for t, c in (("a", "liver"), ("b", "spleen"), ("c", "pancreas"))]
    data = RunData(prep={}, train_sets=[{"crops": crops, "labels": labels}], train_crops=crops, train_labels=labels,
                   crops_per_rank=4, volumes_per_rank=1, train_rows=rows, train_emb=torch.randn(3, 384),
                   eval_rows=[], eval_emb=np.zeros((0, 384), np.float32), text_source=None, eval_sets=[],
                   val_sets=[])
    step = Step(net=model, data=data, key_class=[structure_class(k) for k in model.organ_keys],
                augment=augment.AugmentConfig(), cls_loss=OrganClassificationLoss(), align_loss=OrganInfoNCE(0.1),
                autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                gen=torch.Generator().manual_seed(0), rng=np.random.default_rng(0))
    loss, _ = image_step(step, torch.arange(4), "image", torch.device("cpu"))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss, parts = alignment_step(step, np.array([0]), {"texts_per_volume": 3}, torch.device("cpu"))
    assert torch.isfinite(loss) and np.isfinite(parts["align"])
    assert seen == [(False, torch.float32), (False, torch.float32)]


def test_validation_volumes_are_capped_unless_the_configuration_asks_for_all(tiny_run_config, tmp_path):
    from medsora_training.distributed import Dist
    from medsora_training.train import DEFAULTS, build_model, deep_update, load_data

    _, base = tiny_run_config
    cfg = deep_update(DEFAULTS, deep_update(base, {
        "data": {"phantoms": {"n": 6}, "split": [0.2, 0.8, 0.0], "cache_dir": str(tmp_path / "cache")},
        "stages": {"alignment": {"epochs": 0}}}))
    model, dist = build_model(cfg, fresh=True), Dist("cpu")
    capped = load_data(cfg, model, tmp_path, dist, show=False)
    assert len(capped.prep["val"]) == 5 and len(capped.val_sets) == 4  # the default keeps smoke runs short
    every = load_data(deep_update(cfg, {"eval": {"val_volumes": None}}), model, tmp_path, dist, show=False)
    assert [v["case_id"] for v in every.val_sets] == [v["case_id"] for v in capped.prep["val"]]
    from medsora_training.train import load_config

    paper = load_config(REPO / "Training" / "configs" / "paper_gpu.yaml")
    assert "val_volumes" in paper["eval"] and paper["eval"]["val_volumes"] is None  # all of BTCV's validation list


def _edits_sys_path(tree) -> list[int]:
    """Lines where ``sys.path`` is changed: a call of one of its methods, or an assignment to it."""
    import ast

    def is_sys_path(node):
        return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                and node.value.id == "sys")

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_training_program_edits_sys_path():
    import ast

    files = sorted((REPO / "Training").rglob("*.py"))
    assert len(files) >= 25
    edits = {str(p.relative_to(REPO)): _edits_sys_path(ast.parse(p.read_text(encoding="utf-8"))) for p in files}
    assert {name: lines for name, lines in edits.items() if lines} == {}
    # the check itself finds the forms the programs used before
    probe = ast.parse("import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += ['z']\n")
    assert _edits_sys_path(probe) == [2, 3, 4]


def test_training_programs_run_from_any_folder_without_path_edits(tmp_path):
    """Each program finds medsora_training beside it and MedSORALib where it is installed, from another folder."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    import MedSORALib

    env["PYTHONPATH"] = str(Path(MedSORALib.__file__).resolve().parents[1])  # the runtime only, as installed
    for program in ("train.py", "train_text.py", "ablation.py", "evaluate_fusion.py", "leave_one_ct_out.py"):
        done = subprocess.run([sys.executable, str(REPO / "Training" / program), "--help"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (program, done.stderr[-2000:])
        assert "usage:" in done.stdout, program
