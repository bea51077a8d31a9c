"""Training-only code of the text side: fitting the reasoner, ranking metrics, the zero-shot baseline."""
