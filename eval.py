"""Evaluate a checkpoint on a held-out store: python eval.py ckpt_path=PATH data=c57bl6"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from painface.errors import run_hydra_task
    from painface.training import evaluate

    run_hydra_task(evaluate, cfg)


if __name__ == "__main__":
    from painface.config import one_line_hydra_errors

    one_line_hydra_errors()
    main()
