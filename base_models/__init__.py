"""artalign base models: the procedural world, its oracle, the simulated raters who judge through
the oracle, CLIP, VAE, UNet and the generator."""

__version__ = "0.1.0"
