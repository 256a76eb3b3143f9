"""Train the pain classifier: python train.py model=paper data=balbc"""

from painface.entry import hydra_main

if __name__ == "__main__":
    hydra_main("train")
