"""Text side: sentence encoder, organ anchors, soft labels and the relevance MLP."""
