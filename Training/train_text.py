"""Train MedSORA's text models: the program of :mod:`medsora_training.train_text`;
``python Training/train_text.py --help`` lists its options.

    python Training/train_text.py
    python Training/train_text.py --config Training/configs/text.yaml --output /tmp/text-weights
"""
from medsora_training.train_text import main

if __name__ == "__main__":
    raise SystemExit(main())
