"""Train MedSORA's image-text model (and the text models first): the program of
:mod:`medsora_training.train`; ``python Training/train.py --help`` lists its options.

    python Training/train.py --config Training/configs/cpu_smoke.yaml --output runs/smoke
    torchrun --nproc_per_node 4 Training/train.py --config Training/configs/paper_gpu.yaml --output runs/paper --device cuda
"""
from medsora_training.train import main

if __name__ == "__main__":
    raise SystemExit(main())
