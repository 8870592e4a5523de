"""Aligning the generator to a reward: DDPO, Diffusion-DPO (LoRA) and the reward-hacking guard."""
