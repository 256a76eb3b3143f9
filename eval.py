"""Evaluate a checkpoint on a held-out store: python eval.py ckpt_path=PATH data=c57bl6"""

from painface.entry import hydra_main

if __name__ == "__main__":
    hydra_main("eval")
