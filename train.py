"""Train the pain classifier: python train.py model=paper data=balbc"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from painface.errors import run_hydra_task
    from painface.training import train

    metrics = run_hydra_task(train, cfg)
    return metrics.get(cfg.get("optimized_metric") or "", None)


if __name__ == "__main__":
    from painface.config import one_line_hydra_errors

    one_line_hydra_errors()
    main()
