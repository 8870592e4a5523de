"""A tiny SD-style VAE (diffusers AutoencoderKL): config, training, PSNR and scaling factor."""

from base_models.vae.config import VaeConfig
from base_models.vae.evaluate import load_vae, vae_folder
from base_models.vae.train import VAE_DIR, build_vae, train_vae

__all__ = ["VAE_DIR", "VaeConfig", "build_vae", "load_vae", "train_vae", "vae_folder"]
