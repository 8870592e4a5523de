"""Captioned image data: loading every supported format, provenance, opt-out, preprocessing."""

from base_models.data.loaders import (
    ImageTextDataset,
    Record,
    collate,
    filter_opt_out,
    load_records,
)
from base_models.data.transforms import (
    ImageTextTransform,
    can_flip,
    eval_transform,
    has_spatial_attrs,
    mentions_left_right,
    mirror_attrs,
    mirror_text,
    train_transform,
)
from base_models.provenance import (
    OPT_OUT_FILE,
    PROVENANCE_FILE,
    load_opt_out,
    sha256_bytes,
    sha256_file,
    write_provenance,
)

__all__ = [
    "OPT_OUT_FILE",
    "PROVENANCE_FILE",
    "ImageTextDataset",
    "ImageTextTransform",
    "Record",
    "can_flip",
    "collate",
    "eval_transform",
    "filter_opt_out",
    "has_spatial_attrs",
    "load_opt_out",
    "load_records",
    "mentions_left_right",
    "mirror_attrs",
    "mirror_text",
    "sha256_bytes",
    "sha256_file",
    "train_transform",
    "write_provenance",
]
