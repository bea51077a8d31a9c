"""Image side of MedSORA: CT + organ masks -> organ crops -> 2D-3D encoder -> text alignment.

- :mod:`.crops`: ``organ_crops(volume, masks, CropConfig)`` -> one ``(D, H, W)`` tensor per organ.
- :mod:`.encoder`: 2D slice ViT, 3D volume ViT, cross-attention fusion, organ-classification heads.
- :mod:`.losses`: organ classification loss and InfoNCE over organs.
- :mod:`.model`: ``ImageTextModel`` (load / encode_organs / score / save).
- :mod:`.inference`: the same network in plain torch, for scoring.
- :mod:`.phantom`: a synthetic abdominal CT with organ labels, for tests and smoke runs.

Training-time code (augmentation, pretrained ViT loading, Rank-k and mAP) is in the training package,
``medsora_training.image`` (``Training/medsora_training/image/``).
"""
