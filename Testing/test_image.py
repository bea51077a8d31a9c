"""Image side: organ crops, phantom, encoder, fusion modes, losses, model persistence, shipped weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from MedSORALib.errors import ModelError, SegmentationError
from MedSORALib.image.crops import CropConfig, organ_crops
from MedSORALib.image.encoder import FUSION_MODES, SliceVolumeFusion, encoder_config
from MedSORALib.image.losses import OrganClassificationLoss, OrganInfoNCE, slice_mean_similarity
from MedSORALib.image.model import ImageTextModel
from MedSORALib.organs import STRUCTURES
from MedSORALib.volume_io import Volume

torch.set_num_threads(1)

SMALL_CROP = CropConfig(D=8, H=32, W=32)


def small_model(mode="xattn", seed=0) -> ImageTextModel:
    torch.manual_seed(seed)
    cfg = encoder_config("tiny", D=8, H=32, W=32, mode=mode, slice_layers=2, volume_layers=2)
    return ImageTextModel(cfg, CropConfig(D=8, H=32, W=32))


# ----- crops -----------------------------------------------------------------------------------------------
def test_real_ct_crops_have_every_present_organ(example_volume, example_masks):
    crops = organ_crops(example_volume, example_masks, CropConfig())
    assert list(crops) == [k for k in STRUCTURES if k in example_masks]
    assert len(crops) == 12 and "esophagus" not in crops
    for key, crop in crops.items():
        assert crop.shape == (16, 64, 64) and crop.dtype == torch.float32
        assert float(crop.min()) >= 0.0 and float(crop.max()) <= 1.0
        assert float((crop > 0).float().mean()) > 0.005, key


def test_cropping_is_deterministic(example_volume, example_masks):
    # (Its speed is measured by bench/bench_image.py, not bounded here.)
    first = organ_crops(example_volume, example_masks, CropConfig())
    second = organ_crops(example_volume, example_masks, CropConfig())
    assert list(first) == list(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_mask_outside_zeroes_context_and_keeps_organ_values(example_volume, example_masks):
    masks = {"liver": example_masks["liver"]}
    masked = organ_crops(example_volume, masks, CropConfig(mask_outside=True))["liver"]
    context = organ_crops(example_volume, masks, CropConfig(mask_outside=False))["liver"]
    inside = masked > 0
    assert torch.allclose(masked[inside], context[inside])
    # The context version has tissue around the liver; the masked one is zero there.
    assert float((context > 0).float().mean()) > float(inside.float().mean()) + 0.1
    # Liver HU (~50) sit in the upper half of the [-160, 240] window.
    assert 0.45 < float(masked[inside].median()) < 0.65


def _gradient_volume(orientation: str) -> tuple[Volume, dict]:
    """A volume whose HU equals a mix of RAS coordinates, stored RAS or LPS, with a box mask."""
    shape = (40, 40, 20)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    if orientation == "LPS":
        affine[0, 0] = affine[1, 1] = -2.0
    affine[:3, 3] = -affine[:3, :3] @ (np.array(shape) - 1) / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    hu = (ras[..., 0] + 2 * ras[..., 1] + 3 * ras[..., 2]).astype(np.float32)
    mask = np.zeros(shape, bool)
    box = np.abs(ras) <= np.array([20.0, 14.0, 15.0])
    mask[np.all(box, axis=-1)] = True
    return Volume(hu, affine), {"liver": mask}


def test_crop_axes_follow_the_patient_whatever_the_storage_order():
    cfg = CropConfig(window=(-200.0, 200.0), margin=0.0, D=8, H=32, W=32, keep_aspect=False, spacing=(2.0, 2.0, 3.0))
    crops = {o: organ_crops(*_gradient_volume(o), cfg)["liver"] for o in ("RAS", "LPS")}
    assert torch.allclose(crops["RAS"], crops["LPS"], atol=1e-4)
    c = crops["RAS"]
    # HU = x + 2y + 3z: columns run to the patient's left (x falls), rows to posterior (y falls), slices up (z rises).
    assert torch.all(c[:, :, 1:] < c[:, :, :-1])
    assert torch.all(c[:, 1:, :] < c[:, :-1, :])
    assert torch.all(c[1:] > c[:-1])
    # The box spans x in [-20, 20] mm: HU range along a row is 40 -> 40/400 of the window.
    assert float(c[0, 0, 0] - c[0, 0, -1]) == pytest.approx(40 / 400, abs=0.01)


def test_real_ct_crop_puts_the_right_organ_on_the_image_left(example_volume, example_masks):
    union = example_masks["liver"] | example_masks["spleen"]
    marker = Volume(np.where(example_masks["liver"], 1000.0, 0.0).astype(np.float32), example_volume.affine)
    crop = organ_crops(marker, {"liver": union}, CropConfig(window=(0.0, 1000.0), mask_outside=False))["liver"]
    cols = crop.sum(dim=(0, 1))
    w = cols.shape[0]
    assert float(cols[: w // 2].sum()) > 4 * float(cols[w // 2:].sum())


def test_margin_zero_crop_touches_the_organ_on_every_side(example_volume, example_masks):
    cfg = CropConfig(margin=0.0, keep_aspect=False)
    crop = organ_crops(example_volume, {"kidney_left": example_masks["kidney_left"]}, cfg)["kidney_left"]
    nz = crop > 0
    assert nz[0].any() and nz[-1].any()
    assert nz[:, 0, :].any() and nz[:, -1, :].any() and nz[:, :, 0].any() and nz[:, :, -1].any()


def test_bad_masks_raise(example_volume, example_masks):
    with pytest.raises(SegmentationError):
        organ_crops(example_volume, {"liver": np.zeros((3, 3, 3), bool)})
    with pytest.raises(SegmentationError):
        organ_crops(example_volume, {"liver": np.zeros(example_volume.shape, bool)})


def test_crop_config_round_trip():
    cfg = CropConfig(spacing=(1.0, 1.0, 2.5), mask_outside=False, D=8)
    assert CropConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        CropConfig.from_dict({"spacingg": [1, 1, 1]})


# ----- phantom ---------------------------------------------------------------------------------------------
def test_phantom_anatomy_is_plausible():
    from MedSORALib.image.phantom import make_phantom
    from MedSORALib.segmentation_io import masks_from_labelmap

    volume, labels = make_phantom(3, contrast=False)
    masks = masks_from_labelmap(labels, "totalsegmentator")
    assert set(masks) == set(STRUCTURES)
    c = {k: volume.index_to_ras(np.argwhere(m)).mean(0) for k, m in masks.items()}
    x_aorta = c["aorta"][0]
    for right in ("liver", "kidney_right", "gallbladder", "inferior_vena_cava", "adrenal_gland_right"):
        assert c[right][0] > x_aorta + 10, right
    for left in ("spleen", "kidney_left", "stomach", "adrenal_gland_left"):
        assert c[left][0] < x_aorta - 10, left
    assert c["kidney_right"][1] < c["gallbladder"][1] and c["kidney_left"][1] < c["stomach"][1]  # kidneys posterior
    assert c["esophagus"][2] > c["pancreas"][2] + 30  # the oesophagus lies above the pancreas
    ml = {k: m.sum() * volume.voxel_volume_ml for k, m in masks.items()}
    assert 900 < ml["liver"] < 3000 and max(ml, key=ml.get) == "liver"
    assert 60 < ml["kidney_left"] < 400 and ml["adrenal_gland_left"] < 25
    med = {k: float(np.median(volume.array[m])) for k, m in masks.items()}
    assert 30 < med["liver"] < 85 and med["gallbladder"] < 30 and 20 < med["aorta"] < 75
    assert volume.array[masks["stomach"]].min() < -500  # gas in the stomach
    assert float(np.median(volume.array[0, 0, :])) < -900  # air outside the body


def test_phantom_is_seeded_and_schemes_and_orientation_agree():
    from MedSORALib.image.phantom import make_phantom
    from MedSORALib.organs import ORGANS

    a, la = make_phantom(5)
    b, lb = make_phantom(5)
    assert np.array_equal(a.array, b.array) and np.array_equal(la, lb)
    c, _ = make_phantom(6)
    assert not np.array_equal(a.array, c.array)
    _, btcv = make_phantom(5, label_scheme="btcv")
    assert np.array_equal(btcv == ORGANS["liver"].btcv_label, la == ORGANS["liver"].totalseg_label)
    lps, llps = make_phantom(5, orientation="LPS")
    ras_liver = a.index_to_ras(np.argwhere(la == 5)).mean(0)
    lps_liver = lps.index_to_ras(np.argwhere(llps == 5)).mean(0)
    assert np.allclose(ras_liver, lps_liver, atol=1.0)


# ----- encoder and fusion modes ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", FUSION_MODES)
def test_encoder_outputs_per_mode(mode):
    model = small_model(mode)
    out = model(torch.rand(3, 8, 32, 32))
    expected = {"2d": {"f2d", "logits_2d"}, "3d": {"f3d", "logits_3d"},
                "concat": {"f2d", "f3d", "logits_2d", "logits_3d", "logits_fused"},
                "xattn": {"f2d", "f3d", "logits_2d", "logits_3d", "logits_fused"}}[mode]
    assert set(out) == expected | {"features"}
    assert out["features"].shape == ((3, 1, 64) if mode == "3d" else (3, 8, 64))
    for key in out:
        if key.startswith("logits"):
            assert out[key].shape == (3, 13)
    total, parts = OrganClassificationLoss()(out, torch.tensor([0, 1, 2]))
    assert len(parts) == {"2d": 1, "3d": 1, "concat": 3, "xattn": 3}[mode]
    assert float(total.detach()) == pytest.approx(sum(parts.values()), rel=1e-5)
    if mode == "2d":
        assert model.encoder.volume_encoder is None
    if mode == "3d":
        assert model.encoder.slice_encoder is None


def test_cross_attention_adds_one_vector_to_every_slice():
    torch.manual_seed(0)
    fusion = SliceVolumeFusion(64, 4)
    f2d, f3d = torch.randn(2, 8, 64), torch.randn(2, 64)
    fused = fusion(f2d, f3d)
    delta = fused - f2d
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6)
    assert not torch.allclose(delta[0, 0], delta[1, 0])
    # The query decides the output: another 3D vector gives another Fout.
    assert not torch.allclose(fusion(f2d, torch.randn(2, 64)), fused)


def test_xattn_depends_on_both_branches():
    model = small_model("xattn")
    model.eval()
    x = torch.rand(2, 8, 32, 32)
    with torch.no_grad():
        base = model(x)["features"]
        # Zeroing the 3D branch's patch embedding changes f3D and thereby F.
        model.encoder.volume_encoder.vit.patch_embedding.patch_embeddings.weight.zero_()
        changed = model(x)["features"]
    assert not torch.allclose(base, changed)


def test_encoder_rejects_bad_sizes():
    with pytest.raises(ValueError):
        encoder_config("tiny", H=30)
    with pytest.raises(ValueError):
        encoder_config("tiny", mode="sum")


# ----- losses ------------------------------------------------------------------------------------------------
def test_infonce_known_values():
    loss = OrganInfoNCE(0.1)
    sim = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert float(loss(sim, torch.eye(2, dtype=torch.bool))) == pytest.approx(math.log1p(math.exp(-10)), rel=1e-4)
    # Swapped positives: -log(e^0 / (e^10 + 1)).
    assert float(loss(sim, ~torch.eye(2, dtype=torch.bool))) == pytest.approx(math.log(math.exp(10) + 1), rel=1e-5)
    # Uniform similarity over 4 organs, one positive: log 4.
    assert float(loss(torch.zeros(3, 4), torch.eye(3, 4, dtype=torch.bool))) == pytest.approx(math.log(4), rel=1e-6)
    # Two positives (a "kidney" text and both kidneys): -log(2 e^5 / (2 e^5 + 1)).
    multi = loss(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64), torch.tensor([[True, True, False]]))
    assert float(multi) == pytest.approx(math.log1p(math.exp(-5) / 2), rel=1e-4)
    # A text with no positive organ is left out of the mean.
    sim3 = torch.tensor([[1.0, 0.0], [0.3, 0.2]], dtype=torch.float64)
    pos3 = torch.tensor([[True, False], [False, False]])
    assert float(loss(sim3, pos3)) == pytest.approx(math.log1p(math.exp(-10)), rel=1e-4)
    with pytest.raises(ValueError):
        loss(sim3, torch.zeros(2, 2, dtype=torch.bool))
    # Temperature matters: tau = 1 gives log(1 + e^-1).
    assert float(OrganInfoNCE(1.0)(sim, torch.eye(2, dtype=torch.bool))) == pytest.approx(math.log1p(math.exp(-1)))


def test_slice_mean_similarity_known_values():
    organ = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-2.0, 0.0], [-3.0, 0.0]]])  # (2 organs, 2 slices, d=2)
    text = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    sim = slice_mean_similarity(organ, text)
    expected = torch.tensor([[0.5, -1.0], [math.sqrt(0.5), -math.sqrt(0.5)]])
    assert torch.allclose(sim, expected, atol=1e-6)


def test_infonce_gradient_pulls_the_positive_up():
    sim = torch.tensor([[0.2, 0.3, 0.1]], requires_grad=True)
    OrganInfoNCE(0.1)(sim, torch.tensor([[True, False, False]])).backward()
    assert sim.grad[0, 0] < 0 and sim.grad[0, 1] > 0 and sim.grad[0, 2] > 0


# ----- model API and persistence -------------------------------------------------------------------------------
def test_encode_score_and_round_trip(tmp_path):
    model = small_model()
    crops = {k: torch.rand(8, 32, 32) for k in ("liver", "spleen", "kidney_left")}
    feats = model.encode_organs(crops)
    assert feats.keys == ["liver", "spleen", "kidney_left"]
    assert feats.slice_features.shape == (3, 8, 64)
    assert torch.allclose(feats.slice_features.norm(dim=-1), torch.ones(3, 8), atol=1e-5)
    assert feats.organ_probabilities.shape == (3, 13)
    emb = np.random.default_rng(0).normal(size=(5, 384)).astype(np.float32)
    scores = model.score(feats, emb)
    assert scores.shape == (5, 3) and scores.dtype == np.float32
    assert np.all(scores >= -1) and np.all(scores <= 1)

    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "config.json"}
    loaded = ImageTextModel.load(tmp_path / "m")
    feats2 = loaded.encode_organs(crops)
    assert torch.equal(feats.slice_features, feats2.slice_features)
    assert np.array_equal(scores, loaded.score(feats2, emb))
    assert loaded.info()["mode"] == "xattn" and loaded.info()["weights_sha256"]


def test_model_errors(tmp_path):
    with pytest.raises(ModelError):
        ImageTextModel.load(tmp_path / "missing")
    model = small_model()
    with pytest.raises(ModelError):
        model.encode_organs({"liver": torch.rand(16, 64, 64)})
    with pytest.raises(ModelError):
        model.score(model.encode_organs({"liver": torch.rand(8, 32, 32)}), np.zeros((2, 100), np.float32))
    model.save(tmp_path / "m")
    other = small_model("2d")
    other.save(tmp_path / "o")
    # Weights of one mode under the configuration of another do not load.
    (tmp_path / "m" / "model.safetensors").write_bytes((tmp_path / "o" / "model.safetensors").read_bytes())
    with pytest.raises(ModelError):
        ImageTextModel.load(tmp_path / "m")


def test_pretrained_timm_weights_load_into_the_slice_vit(tmp_path):
    import re

    from safetensors.torch import save_file

    from MedSORALib.image.encoder import SliceViT
    from medsora_training.image.pretrained import load_slice_weights

    torch.manual_seed(1)
    cfg = encoder_config("tiny", D=8, H=32, W=32, slice_layers=2)
    source = SliceViT(cfg)
    sd = source.vit.state_dict()
    names = {"norm1": "norm1", "norm2": "norm2", "attn.qkv": "attn.qkv", "attn.out_proj": "attn.proj",
             "mlp.linear1": "mlp.fc1", "mlp.linear2": "mlp.fc2"}
    timm = {"patch_embed.proj.weight": sd["patch_embedding.patch_embeddings.weight"].repeat(1, 3, 1, 1) / 3,
            "patch_embed.proj.bias": sd["patch_embedding.patch_embeddings.bias"], "cls_token": sd["cls_token"],
            "pos_embed": torch.cat([sd["cls_position"], sd["patch_embedding.position_embeddings"]], 1),
            "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"], "head.weight": torch.zeros(10, 64)}
    for k, v in sd.items():
        m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if m and m.group(2) in names:
            timm[f"blocks.{m.group(1)}.{names[m.group(2)]}.{m.group(3)}"] = v
    save_file({k: v.contiguous() for k, v in timm.items()}, str(tmp_path / "vit.safetensors"))
    target = SliceViT(cfg)
    report = load_slice_weights(target, tmp_path / "vit.safetensors")
    assert report["format"] == "timm" and report["skipped"] == []
    x = torch.rand(2, 8, 32, 32)
    assert torch.allclose(source(x), target(x), atol=1e-5)
    # A model with other sizes is refused with a clear error.
    with pytest.raises(ModelError):
        load_slice_weights(SliceViT(encoder_config("small", D=8, H=32, W=32)), tmp_path / "vit.safetensors")


def test_augmentation_keeps_the_input_and_the_zero_outside():
    from medsora_training.image.augment import AugmentConfig, augment_crops

    x = torch.zeros(2, 8, 32, 32)
    x[:, :, 8:24, 8:24] = 0.5
    before = x.clone()
    y = augment_crops(x, AugmentConfig(rotate_deg=0, scale=0, shift=0, gain=0.2, offset=0.1),
                      torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    assert torch.all(y[:, :, :8] == 0) and torch.all(y[:, :, :, 24:] == 0)
    assert not torch.allclose(y[:, :, 8:24, 8:24], x[:, :, 8:24, 8:24])
    z = augment_crops(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert z.shape == x.shape and float(z.min()) >= 0 and float(z.max()) <= 1


def test_ranking_metrics_known_values():
    from medsora_training.image.evaluation import class_scores, ranking_metrics

    scores = np.array([[0.9, 0.5, 0.1], [0.1, 0.2, 0.9], [0.3, 0.2, 0.1]])
    m = ranking_metrics(scores, ["a", "b", "c"], [["b"], ["c", "a"], ["z"]])
    assert m["n"] == 2 and m["skipped"] == 1
    assert m["rank1"] == pytest.approx(0.5) and m["rank2"] == pytest.approx(1.0)
    # AP: first row 1/2; second row (1/1 + 2/3) / 2.
    assert m["mAP"] == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)
    cs, present = class_scores(np.array([[0.1, 0.7, 0.3]]), ["kidney_right", "kidney_left", "liver"],
                               ["liver", "kidney", "spleen"])
    assert present == ["liver", "kidney"] and np.allclose(cs, [[0.3, 0.7]])


# ----- shipped weights -----------------------------------------------------------------------------------------
#: Symptoms that name one organ each, for the shipped weights' image-text similarity.
CLEAR_SYMPTOMS = {"yellow skin, dark urine and pale stools": "liver",
                  "blood in the urine with pain in the flank": "kidney",
                  "pain in the left upper abdomen after a fall, feeling faint": "spleen",
                  "vomiting blood after heavy drinking": "stomach",
                  "episodes of pounding headache, sweating and palpitations with very high blood pressure":
                      "adrenal_gland"}


def _clear_symptoms_in_top3(model, feats) -> tuple[int, int]:
    from medsora_training.image.evaluation import class_scores
    from MedSORALib.organs import FULL_CLASSES
    from MedSORALib.text.encoder import get_default_encoder

    sims = model.score(feats, get_default_encoder().encode(list(CLEAR_SYMPTOMS)))
    scores, present = class_scores(sims, feats.keys, FULL_CLASSES)
    hits = [organ in [present[i] for i in np.argsort(-row)[:3]]
            for organ, row in zip(CLEAR_SYMPTOMS.values(), scores) if organ in present]
    return sum(hits), len(hits)


def test_shipped_weights_on_a_real_ct_they_never_saw():
    """The DICOM series, which the shipped image model never saw in training (its model card: trained on
    phantoms and example_ct_sm only)."""
    from conftest import DATA, EXAMPLE_DICOM
    from MedSORALib.image.model import DEFAULT_WEIGHTS_DIR
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.fail("the default image weights are missing from MedSORALib/resources/weights/image")
    model = ImageTextModel.load()
    volume = read_volume(EXAMPLE_DICOM)
    masks = {k: m for k, m in read_organ_masks(DATA / "example_ct_dicom_seg.nii.gz", volume,
                                               "totalsegmentator").items() if m.any()}
    feats = model.encode_volume(volume, masks)
    predicted = feats.predicted_organs(model.organ_keys)
    correct = sum(predicted[k] == k for k in feats.keys)
    # 5 of the 8 organs (the model card's figure), where chance over 13 structures is about 0.6.
    assert len(feats.keys) == 8 and correct >= 5, predicted
    scores = model.score(feats, np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32))
    assert scores.shape == (4, 8) and np.all(np.isfinite(scores))
    # Clear symptoms: the named organ among the top 3 of 8 for 3 of the 4 present (measured; chance 1.5).
    hits, n = _clear_symptoms_in_top3(model, feats)
    assert n == 4 and hits >= 3


def test_shipped_weights_on_their_training_ct(example_volume, example_masks):
    """example_ct_sm is part of the shipped model's training data: a training-data figure, not generalisation."""
    model = ImageTextModel.load()
    crops = organ_crops(example_volume, example_masks, model.crop_config)
    feats = model.encode_organs(crops)  # speed: bench/bench_image.py
    predicted = feats.predicted_organs(model.organ_keys)
    correct = sum(predicted[k] == k for k in feats.keys)
    assert correct >= 10, predicted  # the model card reports the exact figure
    scores = model.score(feats, np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32))
    assert scores.shape == (4, 12)


def test_shipped_weights_match_clear_symptoms_to_their_organs(example_volume, example_masks):
    """On the training CT (see the test above for the unseen one): every clear symptom's organ in the top 3."""
    model = ImageTextModel.load()
    hits, n = _clear_symptoms_in_top3(model, model.encode_volume(example_volume, example_masks))
    assert n == 5 and hits == 5
