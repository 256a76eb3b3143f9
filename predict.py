"""Score every crop of a store: python predict.py ckpt_path=PATH data.store=STORE out=preds.parquet"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from painface.errors import run_hydra_task
    from painface.predict import predict_from_config

    run_hydra_task(predict_from_config, cfg)


if __name__ == "__main__":
    from painface.config import one_line_hydra_errors

    one_line_hydra_errors()
    main()
