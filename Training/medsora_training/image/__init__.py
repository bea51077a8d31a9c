"""Training-only code of the image side: augmentation, pretrained 2D weights, evaluation metrics."""
