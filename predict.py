"""Score every crop of a store: python predict.py ckpt_path=PATH data.store=STORE out=preds.parquet"""

from painface.entry import hydra_main

if __name__ == "__main__":
    hydra_main("predict")
