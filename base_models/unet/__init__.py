"""The latent UNet of the generator: config, DDPM training on VAE latents, the SD folder it writes.

- config.py   UNetConfig (presets micro / quick / gpu)
- model.py    the UNet2DConditionModel and the DDPM / DDIM schedules
- losses.py   ε / v targets, min-SNR-γ weights, caption dropout (pure tensor functions)
- latents.py  VAE posteriors and caption states, computed once per run
- output.py   the SD folder, sample grids, EMA state in checkpoints
- train.py    train_unet
"""

from base_models.unet.config import UNetConfig
from base_models.unet.train import train_unet

__all__ = ["UNetConfig", "train_unet"]
