"""Datasets as in-memory uint8 tensors, their sources, the split, batched augmentation.

ds = load_dataset("cifar10")                      # packed npz, torchvision folder or download
train_idx, val_idx = train_val_split(len(ds.y_train), 5000, seed=0)
mean, std = ds.mean_std()
it = BatchIterator(ds.x_train, ds.y_train, 512, shuffle=True, augment=Augment(),
                   mean=mean, std=std, generator=torch.Generator().manual_seed(0),
                   indices=train_idx)
"""

from cnnbench.data.augment import (
    Augment,
    AugmentParams,
    BatchIterator,
    Cutout,
    Degrade,
    normalize,
)
from cnnbench.data.dataset import (
    ImageDataset,
    channel_mean_std,
    list_datasets,
    load_dataset,
    stratified_sample,
    train_val_split,
)
from cnnbench.data.imagefolder import read_imagefolder
from cnnbench.data.sources import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    DataError,
    DataWarning,
    cache_dir,
    default_data_dir,
    resolve_data_dir,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "Augment",
    "AugmentParams",
    "BatchIterator",
    "Cutout",
    "DataError",
    "DataWarning",
    "Degrade",
    "ImageDataset",
    "cache_dir",
    "channel_mean_std",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "normalize",
    "read_imagefolder",
    "resolve_data_dir",
    "stratified_sample",
    "train_val_split",
]
