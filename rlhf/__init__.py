"""Reward models, the alignment trainers (DDPO, Diffusion-DPO, LoRA), the prompt optimiser and the
loop: the top package, above labeling_app and evaluation (README, Architecture)."""
