"""Image side of MedSORA: CT + organ masks -> organ crops -> 2D-3D encoder -> text alignment.

- :mod:`.crops`: ``organ_crops(volume, masks, CropConfig)`` -> one ``(D, H, W)`` tensor per organ.
- :mod:`.encoder`: 2D slice ViT, 3D volume ViT, cross-attention fusion, organ-classification heads.
- :mod:`.losses`: organ classification loss and InfoNCE over organs.
- :mod:`.model`: ``ImageTextModel`` (load / encode_organs / score / save).
- :mod:`.evaluation`: Rank-k and mAP as the paper measures them.
- :mod:`.phantom`: a synthetic abdominal CT with organ labels, for tests and smoke runs.
- :mod:`.augment`, :mod:`.pretrained`: training-time augmentation and pretrained ViT loading.
"""
