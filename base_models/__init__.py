"""artalign base models: the procedural world, its oracle, CLIP, VAE, UNet and the generator."""

__version__ = "0.1.0"
