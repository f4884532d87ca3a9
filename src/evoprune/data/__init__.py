"""Image datasets: folder layouts, CSV manifests, the built-in ELPV sets, and split making.

Loaders return an ImageDataset of paths and labels; pixels are read later (open_rgb) by the
feature extractor.
"""

from evoprune.data.builtin import list_datasets
from evoprune.data.dataset import ImageDataset
from evoprune.data.images import IMAGE_EXTENSIONS, open_rgb
from evoprune.data.loading import load_dataset
from evoprune.data.splits import kfold_splits, stratified_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "kfold_splits",
    "list_datasets",
    "load_dataset",
    "open_rgb",
    "stratified_split",
]
