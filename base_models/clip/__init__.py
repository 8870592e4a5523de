"""A tiny CLIP in open_clip's own format: config, training, zero-shot evaluation, loading.

Importing this package registers artalign's model configs with open_clip, so
`open_clip.create_model_and_transforms("artalign-tiny", pretrained=FILE)` works:
- artalign-tiny: open_clip's ModifiedResNet image tower (width 16) + a 2-layer, 64-wide text
  transformer with open_clip's BPE tokenizer (context 48, enough for 3-object captions).
  A ResNet, not a ViT, because on 32px images it learns shapes several times faster per CPU
  second (measured: supervised shape probe after 300 steps, ViT p4 48% at 0.46 s/step, this
  ResNet 71% at 0.14 s/step).
- artalign-vit-tiny: the same text tower with a 4-layer ViT (patch 4), for comparison.
- artalign-micro: a minute ResNet CLIP for tests.

Training (train.py) is LiT-style in the quick and gpu presets: the image tower is first trained
with supervision on the data set's attribute records (pretrain.py, labels.py), then locked while
the text tower learns to match it (lit.py) with UniCL positives (positives.py).
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
