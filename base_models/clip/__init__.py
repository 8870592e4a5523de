"""A tiny CLIP in open_clip's own format: config, training, zero-shot evaluation, loading.

Importing this package registers artalign's model configs (artalign-tiny, artalign-micro) with
open_clip, so `open_clip.create_model_and_transforms("artalign-tiny", pretrained=FILE)` works.
"""

from base_models.clip.config import ClipConfig
from base_models.clip.evaluate import eval_clip
from base_models.clip.model_io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    embed_images,
    embed_texts,
    load_clip,
    model_config,
    register_model_configs,
    save_clip,
)
from base_models.clip.train import train_clip

register_model_configs()

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "ClipConfig",
    "embed_images",
    "embed_texts",
    "eval_clip",
    "load_clip",
    "model_config",
    "register_model_configs",
    "save_clip",
    "train_clip",
]
