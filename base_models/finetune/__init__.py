"""Style fine-tuning: bind a style shown by 10-50 captioned images to a trigger token.

- config.py      `FinetuneConfig` and its presets (micro / quick / gpu)
- data.py        the caption rule (`trigger_caption`), style images as VAE posteriors,
                 DreamBooth's class images (drawn by the base model, cached)
- embeddings.py  textual-inversion tokens: add, save (diffusers' format), `load_embedding`
- train.py       `train_style` (in memory) and `finetune_style` (folders in, files out)
"""

from base_models.finetune.config import FinetuneConfig
from base_models.finetune.data import strip_style, trigger_caption
from base_models.finetune.embeddings import EMBEDDING_FILE, load_embedding
from base_models.finetune.train import DEFAULT_TOKENS, METHODS, finetune_style, train_style

__all__ = [
    "DEFAULT_TOKENS",
    "EMBEDDING_FILE",
    "METHODS",
    "FinetuneConfig",
    "finetune_style",
    "load_embedding",
    "strip_style",
    "train_style",
    "trigger_caption",
]
