"""Text side: sentence encoder, organ anchors, soft labels, the relevance MLP and the out-of-domain decision.

Fitting these models is the training package's (``medsora_training.text``).
"""
