"""Datasets, transforms and the ``PainFaceDataModule`` over the crop store.

Splits are by mouse: no animal is in both training and validation, so validation
measures generalisation to new animals (the paper's Table 1 was measured on
training images).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from painface.errors import PainfaceError
from painface.store import CropReader, StoreError, read_index

LABELS = {"no_pain": 0, "pain": 1}
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)


class DataError(PainfaceError):
    pass


def augment_and_resize(
    img: np.ndarray, size: int, rng: np.random.Generator | None, rotation: float = 20.0, hflip: bool = True
) -> np.ndarray:
    """Paper step 5 augmentation: rotation within +-20 degrees and horizontal flip, then resize.

    Rotation and resize are one affine warp, so the image is resampled once.
    """
    h, w = img.shape[:2]
    angle = float(rng.uniform(-rotation, rotation)) if rng is not None and rotation else 0.0
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, size / w)
    m[:, 2] += (size - w) / 2, (size - h) / 2
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng is not None and hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def to_tensor(img_bgr: np.ndarray) -> torch.Tensor:
    """HWC BGR uint8 -> normalised CHW RGB float32. The planes are reordered while still
    bytes, then scaled in place: the same float32 arithmetic as ``(x / 255 - MEAN) / STD``
    on an RGB copy, 5x faster (the data loader's largest cost per crop)."""
    chw = np.ascontiguousarray(img_bgr.transpose(2, 0, 1)[::-1]).astype(np.float32)
    chw /= 255.0
    chw -= MEAN[:, None, None]
    chw /= STD[:, None, None]
    return torch.from_numpy(chw)


class CropDataset(Dataset):
    """Crops of a store index; yields image, label, group codes and crop_id."""

    def __init__(
        self,
        root,
        index: pd.DataFrame,
        input_size: int,
        train: bool = False,
        rotation: float = 20.0,
        hflip: bool = True,
        group_codes: np.ndarray | None = None,
        seed: int = 0,
    ):
        self.reader = CropReader(root)
        self.index = index.reset_index(drop=True)
        self.loc = self.index[["image", "offset", "nbytes"]].to_numpy()
        self.labels = self.index["label"].map(LABELS).fillna(-1).astype(int).to_numpy()
        self.crop_ids = self.index["crop_id"].to_numpy()
        self.size, self.train, self.rotation, self.hflip = input_size, train, rotation, hflip
        self.group_codes = group_codes if group_codes is not None else np.zeros((len(index), 0), np.int64)
        self.seed = seed
        self._rng = None

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        if self._rng is None:  # one generator per worker process
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng([self.seed, info.id if info else 0, torch.initial_seed() % 2**31])
        image, offset, nbytes = self.loc[i]
        img = self.reader.read(image, offset, nbytes)
        img = augment_and_resize(img, self.size, self._rng if self.train else None, self.rotation, self.hflip)
        return {
            "image": to_tensor(img),
            "label": int(self.labels[i]),
            "groups": torch.from_numpy(self.group_codes[i]),
            "crop_id": self.crop_ids[i],
        }


def mouse_folds(mice: list[str], n_folds: int, seed: int) -> list[list[str]]:
    """Assign mice to folds after a seeded shuffle; n_folds <= 0 means leave-one-mouse-out."""
    mice = sorted(mice)
    order = list(np.random.default_rng(seed).permutation(len(mice)))
    k = len(mice) if n_folds <= 0 else n_folds
    if k > len(mice):
        raise DataError(f"data.n_folds={n_folds} but the selection has only {len(mice)} mice")
    return [[mice[j] for j in order[f::k]] for f in range(k)]


class PainFaceDataModule(L.LightningDataModule):
    def __init__(
        self,
        store: str,
        name: str = "store",
        build: dict | None = None,
        strains=None,
        sessions=None,
        phases=None,
        mice=None,
        fold: int = 0,
        n_folds: int = 4,
        split_seed: int = 0,
        test_fold: int | None = None,
        min_sharpness: float | None = None,
        samples_per_epoch: int = 30000,
        batch_size: int = 128,
        num_workers: int = 2,
        pin_memory: bool = False,
        rotation: float = 20.0,
        hflip: bool = True,
        input_size: int = 96,
        group_by=None,
        persistent_workers: bool = True,
    ):
        super().__init__()
        # recorded with the model's, so a W&B/CSV run shows which store, fold and sampling it used
        self.save_hyperparameters(ignore=["group_by"])
        self.store, self.name, self.build = Path(store), name, build
        self.filters = {"strain": strains, "session_id": sessions, "phase": phases, "mouse_id": mice}
        self.fold, self.n_folds, self.split_seed, self.test_fold = fold, n_folds, split_seed, test_fold
        self.min_sharpness = min_sharpness
        self.samples_per_epoch, self.batch_size = samples_per_epoch, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.rotation, self.hflip, self.input_size = rotation, hflip, input_size
        self.group_by = list(group_by or [])
        self.group_levels: dict[str, list[str]] = {}
        self.index: pd.DataFrame | None = None

    # -- selection ---------------------------------------------------------------------
    def prepare_data(self):
        if self.build and not (self.store / "store.json").exists():
            from painface.synthetic.store import build_synthetic_store

            build_synthetic_store(self.store, **self.build)

    def selection(self) -> pd.DataFrame:
        if not (self.store / "store.json").exists():
            raise StoreError(
                f"data.store: no crop store at {self.store}; build one with "
                f"'painface extract MANIFEST --store {self.store}' (see README: from videos to a store)"
            )
        if self.build:
            from painface.synthetic.store import check_build

            check_build(self.store, self.build)
        idx = read_index(self.store)
        if idx.empty:
            raise DataError(f"{self.store}: the store is empty (no crops)")
        for col, allowed in self.filters.items():
            if allowed:
                idx = idx[idx[col].isin(list(allowed))]
        idx = idx[idx["label"].isin(list(LABELS))]
        if self.min_sharpness is not None:
            if idx["sharpness"].isna().all():
                raise DataError(
                    f"data.min_sharpness: {self.store} has no sharpness values (extracted by an older "
                    f"painface); re-extract it or drop the filter"
                )
            idx = idx[idx["sharpness"] >= self.min_sharpness]
        if idx.empty:
            raise DataError(
                f"{self.store}: no labelled crops match the selection "
                f"{ ({k: v for k, v in self.filters.items() if v}) }"
            )
        return idx.reset_index(drop=True)

    def split(self, idx: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(train, validation, test) by mouse.

        - ``n_folds=1``: the paper's Table 1 protocol: train on every mouse; validation and
          test are the training images themselves;
        - ``test_fold=None``: fold ``fold`` validates (chooses the checkpoint) and is also
          what ``test`` reports on, and the summary says so;
        - ``test_fold=k``: fold k is held out from training *and* from the checkpoint's choice.
        """
        if self.n_folds == 1:
            if self.test_fold is not None:
                raise DataError("data.test_fold: with data.n_folds=1 (train on all mice) there is no fold to hold out")
            self.test_role = "training mice (the paper's Table 1 protocol: no mouse held out)"
            return idx, idx, idx
        folds = mouse_folds(idx["mouse_id"].unique().tolist(), self.n_folds, self.split_seed)
        if not 0 <= self.fold < len(folds):
            raise DataError(f"data.fold={self.fold} out of range: {len(folds)} folds")
        val_mice = set(folds[self.fold])
        test_mice = val_mice
        self.test_role = "validation mice (they also chose the checkpoint)"
        if self.test_fold is not None:
            if not 0 <= self.test_fold < len(folds) or self.test_fold == self.fold:
                raise DataError(
                    f"data.test_fold={self.test_fold}: must be a fold of 0..{len(folds) - 1} other than "
                    f"data.fold={self.fold}"
                )
            test_mice = set(folds[self.test_fold])
            self.test_role = "held-out test mice (they neither trained the network nor chose the checkpoint)"
        val = idx[idx["mouse_id"].isin(val_mice)]
        test = idx[idx["mouse_id"].isin(test_mice)]
        train = idx[~idx["mouse_id"].isin(val_mice | test_mice)]
        return train, val, test

    def setup(self, stage=None):
        if self.index is not None:
            return
        idx = self.selection()
        for col in self.group_by:
            if col not in idx.columns:
                raise DataError(f"model.metrics.group_by: unknown index column '{col}'")
            self.group_levels[col] = sorted(idx[col].astype(str).unique())
        self.index = idx
        self.train_index, self.val_index, self.test_index = self.split(idx)
        for name, part in (("training", self.train_index), ("validation", self.val_index), ("test", self.test_index)):
            classes = set(part["label"])
            if len(classes) < 2:
                raise DataError(
                    f"{self.store}: the {name} set has only one class ({classes or 'none'}); "
                    f"it needs both pain and no_pain crops"
                )

    def _dataset(self, index, train):
        codes = (
            np.stack(
                [
                    index[c].astype(str).map({v: i for i, v in enumerate(self.group_levels[c])}).to_numpy()
                    for c in self.group_by
                ],
                axis=1,
            ).astype(np.int64)
            if self.group_by
            else None
        )
        return CropDataset(
            self.store,
            index,
            self.input_size,
            train=train,
            rotation=self.rotation,
            hflip=self.hflip,
            group_codes=codes,
            seed=self.split_seed,
        )

    def _loader(self, ds, sampler=None, shuffle=False):
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=False,
        )

    def train_dataloader(self):
        ds = self._dataset(self.train_index, train=True)
        # paper step 5: every epoch draws a fixed number of random crops, whatever the store's size
        sampler = RandomSampler(ds, replacement=True, num_samples=self.samples_per_epoch)
        return self._loader(ds, sampler=sampler)

    def val_dataloader(self):
        return self._loader(self._dataset(self.val_index, train=False))

    def test_dataloader(self):
        return self._loader(self._dataset(self.test_index, train=False))
