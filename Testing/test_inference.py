"""The lean inference path: plain-torch image model and BERT equal to the MONAI / transformers ones,
crop resampling equal to MONAI's Orientation + Spacing, and scoring without importing either library."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from MedSORALib.errors import ModelError
from MedSORALib.image.crops import CropConfig, organ_crops, reorient, resample_to_spacing
from MedSORALib.image.encoder import FUSION_MODES, encoder_config
from MedSORALib.image.inference import DEFAULT_WEIGHTS_DIR, InferenceModel, inference_state
from MedSORALib.image.model import ImageTextModel

from conftest import EXAMPLE_CT, EXAMPLE_SEG

REPO = Path(__file__).resolve().parents[1]


def _monai_resample(channels: np.ndarray, affine: np.ndarray, config: CropConfig) -> torch.Tensor:
    """The training-time reference: MONAI's Orientation, then Spacing (bilinear, border)."""
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    t = MetaTensor(torch.from_numpy(channels), affine=torch.as_tensor(affine, dtype=torch.float64))
    t = Orientation(axcodes=config.axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(t)
    t = Spacing(pixdim=tuple(config.spacing), mode="bilinear", padding_mode="border")(t)
    return torch.as_tensor(t.as_tensor(), dtype=torch.float32)


def _ours(channels: np.ndarray, affine: np.ndarray, config: CropConfig) -> torch.Tensor:
    moved, moved_affine = reorient(channels, affine, config.axcodes)
    return resample_to_spacing(torch.from_numpy(np.ascontiguousarray(moved)), moved_affine, config.spacing)


def _random_affine(rng, permute: bool, oblique: bool) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.diag(rng.uniform(0.6, 4.0, 3) * rng.choice([-1.0, 1.0], 3))
    if permute:
        affine[:3, :3] = affine[:3, :3][:, rng.permutation(3)]
    if oblique:
        c, s = np.cos(0.3), np.sin(0.3)
        affine[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ affine[:3, :3]
    affine[:3, 3] = rng.normal(size=3) * 80
    return affine


@pytest.mark.parametrize("permute,oblique", [(False, False), (True, False), (False, True), (True, True)])
def test_resampling_matches_monai_orientation_and_spacing(permute, oblique):
    rng = np.random.default_rng(int(permute) * 2 + int(oblique))
    config = CropConfig()
    for _ in range(3):
        shape = tuple(int(n) for n in rng.integers(4, 30, 3))
        channels = (rng.normal(size=(2, *shape)) * 300).astype(np.float32)
        affine = _random_affine(rng, permute, oblique)
        expected, got = _monai_resample(channels, affine, config), _ours(channels, affine, config)
        assert got.shape == expected.shape
        # values of a few hundred HU: float32 rounding of the sampling positions only
        assert float((got - expected).abs().max()) < 5e-3


def test_resampling_matches_monai_on_the_example_organs(example_volume, example_masks):
    config = CropConfig()
    array, affine = example_volume.array, example_volume.affine
    for key in ("liver", "kidney_left", "adrenal_gland_right", "portal_vein_and_splenic_vein"):
        index = np.argwhere(example_masks[key])
        lo, hi = np.maximum(index.min(0) - 3, 0), index.max(0) + 4
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        channels = np.stack([array[sl], example_masks[key][sl]]).astype(np.float32)
        sub_affine = affine.copy()
        sub_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
        expected, got = _monai_resample(channels, sub_affine, config), _ours(channels, sub_affine, config)
        assert got.shape == expected.shape, key
        assert float((got[0] - expected[0]).abs().max()) < 1e-3, key
        # the mask channel decides which voxels count as organ: the same side of 0.5 everywhere
        assert torch.equal(got[1] >= 0.5, expected[1] >= 0.5), key


def _small(mode: str) -> ImageTextModel:
    torch.manual_seed(FUSION_MODES.index(mode))
    cfg = encoder_config("tiny", D=8, H=32, W=32, mode=mode, slice_layers=2, volume_layers=2,
                         volume_hidden=48 if mode in ("3d", "concat") else 64)
    model = ImageTextModel(cfg, CropConfig(D=8, H=32, W=32))
    # Non-trivial values for every parameter (zero-initialised [CLS] positions would hide a wrong name map).
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("mode", FUSION_MODES)
def test_inference_model_equals_the_monai_model(mode, tmp_path):
    model = _small(mode)
    model.save(tmp_path / "m")
    lean = InferenceModel.load(tmp_path / "m")
    crops = {f"c{i}": torch.rand(8, 32, 32) for i in range(5)}
    with torch.no_grad():
        batch = torch.stack(list(crops.values()))
        expected, got = model.encoder(batch), lean.encoder(batch)
    assert set(got) == set(expected)
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5, rtol=1e-4), name
    a, b = model.encode_organs(crops), lean.encode_organs(crops)
    assert torch.allclose(a.slice_features, b.slice_features, atol=1e-5)
    text = np.random.default_rng(1).normal(size=(3, 384)).astype(np.float32)
    assert np.allclose(model.score(a, text), lean.score(b, text), atol=1e-5)


def test_shipped_weights_load_strictly_in_both_models(example_volume, example_masks):
    monai_model = ImageTextModel.load()  # strict: the installed MONAI builds exactly the saved layers
    lean = InferenceModel.load()
    assert lean.source == str(DEFAULT_WEIGHTS_DIR)
    crops = organ_crops(example_volume, example_masks, lean.crop_config)
    a, b = monai_model.encode_organs(crops), lean.encode_organs(crops)
    assert a.keys == b.keys and len(b.keys) == 12
    assert torch.allclose(a.slice_features, b.slice_features, atol=1e-5)
    assert np.allclose(a.organ_probabilities, b.organ_probabilities, atol=1e-5)
    assert b.predicted_organs(lean.organ_keys) == a.predicted_organs(monai_model.organ_keys)


def test_shipped_weights_with_a_tensor_missing_or_added_fail_to_load(tmp_path):
    """Strict loading in both models: a missing or an extra tensor is an error, never silently skipped. The
    inference tree does not use MONAI's unused ``norm_cross_attn`` layers, so weights without them still load
    there while the MONAI-built model, which has them, refuses."""
    import shutil

    from safetensors.torch import load_file, save_file

    saved = load_file(str(DEFAULT_WEIGHTS_DIR / "model.safetensors"))
    variants = {
        "missing": {k: v for k, v in saved.items() if k != "encoder.slice_encoder.vit.blocks.0.attn.qkv.weight"},
        "extra_block": {**saved, "encoder.slice_encoder.vit.blocks.99.norm1.weight": torch.ones(4)},
        "unknown_layer": {**saved, "encoder.fusion.gate.weight": torch.ones(4)},
        "no_unused_norm": {k: v for k, v in saved.items() if "norm_cross_attn" not in k},
    }
    folders = {}
    for name, state in variants.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        shutil.copy2(DEFAULT_WEIGHTS_DIR / "config.json", folders[name] / "config.json")
        save_file(state, str(folders[name] / "model.safetensors"))
    for name in ("missing", "extra_block", "unknown_layer", "no_unused_norm"):
        with pytest.raises(ModelError, match="do not fit"):
            ImageTextModel.load(folders[name])
    for name in ("missing", "extra_block"):
        with pytest.raises(ModelError, match="do not fit"):
            InferenceModel.load(folders[name])
    with pytest.raises(ModelError, match="does not know"):
        InferenceModel.load(folders["unknown_layer"])
    lean, shipped = InferenceModel.load(folders["no_unused_norm"]), InferenceModel.load()
    for (name, a), (_, b) in zip(lean.state_dict().items(), shipped.state_dict().items()):
        assert torch.equal(a, b), name


def test_inference_state_refuses_unknown_tensors_and_drops_the_unused_norm():
    saved = {"encoder.slice_encoder.vit.blocks.0.norm_cross_attn.weight": torch.zeros(4),
             "encoder.slice_encoder.vit.blocks.0.attn.qkv.weight": torch.zeros(12, 4)}
    assert list(inference_state(saved)) == ["slice.layers.0.qkv.weight"]
    with pytest.raises(ModelError, match="does not know"):
        inference_state({"encoder.slice_encoder.vit.blocks.0.cross_attn.to_q.weight": torch.zeros(4, 4)})


def test_lean_model_refuses_weights_of_another_size(tmp_path):
    _small("xattn").save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder"]["slice_mlp"] = 128
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not fit"):
        InferenceModel.load(tmp_path / "m")


def test_plain_bert_equals_transformers(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from MedSORALib.text.encoder import TextEncoder, _default_model_path

    folder = _default_model_path()
    texts = ["painless jaundice with pale stools", "pain", "left flank pain radiating to the groin " * 40]
    lean = TextEncoder(cache_dir=False).encode(texts)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert lean.shape == (3, 384)
    assert np.abs(lean - expected).max() < 1e-5


def _imported(tmp_path, code: str) -> dict:
    env_code = ("import json, sys\n" + code +
                "\nprint(json.dumps({m: m in sys.modules for m in ('monai', 'transformers', 'scipy.spatial')}))")
    done = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO),
                               "MEDSORA_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_score_and_rank_import_neither_monai_nor_transformers(tmp_path):
    # a fresh embedding cache, so the sentence encoder itself is loaded and run
    score = _imported(tmp_path, (
        "from MedSORALib.cli import main\n"
        f"assert main(['score', '--volume', {str(EXAMPLE_CT)!r}, '--segmentation', {str(EXAMPLE_SEG)!r}, "
        "'--label-scheme', 'totalsegmentator', '--symptom', 'painless jaundice with pale stools', "
        f"'--output', {str(tmp_path / 'out' / 'case')!r}, '--quiet']) == 0"))
    # MONAI and transformers are for training; the measurements find diameters without scipy's convex hull.
    assert score == {"monai": False, "transformers": False, "scipy.spatial": False}
    assert (tmp_path / "out" / "case.json").is_file()
    rank = _imported(tmp_path, "from MedSORALib.cli import main\nassert main(['rank', 'dark urine and itching']) == 0")
    assert rank == {"monai": False, "transformers": False, "scipy.spatial": False}
