"""`PromptConfig`: everything `artalign prompt train` can set, with presets micro / quick / sd15.

Fields, by group:
- language model: init, n_layer, n_embd, n_head, vocab_size, max_length;
- data: data, pairs, grpo_prompts, heldout_share;
- supervised stage (TRL SFTTrainer): sft_epochs, sft_batch_size, sft_lr, sft_warmup;
- RL stage (TRL GRPOTrainer): grpo_steps, grpo_prompts_per_step, num_generations, grpo_lr,
  beta, temperature, max_new_tokens;
- reward: generator, reward, reward_path, relevance, relevance_path, image_weight,
  relevance_weight, keep_weight, images_per_rewrite, steps, guidance;
- run: seed, mixed_precision.
The reward of a rewrite r of a user's prompt p (Promptist's aesthetic-plus-relevance, with an
explicit intent term) is, over `images_per_rewrite` images of r with seeds shared by every rewrite
of p:
    image_weight * z(reward(images, p)) + relevance_weight * z(relevance(images, p))
    - keep_weight * (1 - share of p's stated attributes that r still states),
z(.) in standard deviations over the batch (rlhf.prompt.reward).
"""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError
from base_models.train_utils import MIXED_PRECISION

RELEVANCE = ("clip", "oracle", "none")


@dataclasses.dataclass
class PromptConfig(BaseConfig):
    """A small causal LM that rewrites short prompts: SFT on caption pairs, then GRPO on images."""

    # language model
    init: str | None = hfield(
        None,
        "Local causal-LM folder (transformers) to start from; "
        "empty: a GPT-2 trained from scratch with its own tokenizer.",
    )
    n_layer: int = hfield(4, "Transformer blocks of the from-scratch GPT-2.")
    n_embd: int = hfield(128, "Width of the from-scratch GPT-2.")
    n_head: int = hfield(4, "Attention heads of the from-scratch GPT-2.")
    vocab_size: int = hfield(512, "Byte-level BPE vocabulary trained on the captions.")
    max_length: int = hfield(96, "Longest prompt + rewrite, in tokens.")
    # data
    data: str = hfield(
        "runs/demo/data",
        "Data set folder (pairs drawn from its metadata.jsonl attribute records) or a JSONL "
        'file of {"short", "rich"} pairs.',
    )
    pairs: int = hfield(20000, "Supervised pairs drawn from the records (cycled when fewer).")
    grpo_prompts: int = hfield(2000, "Short prompts for the RL stage (fresh draws).")
    heldout_share: float = hfield(0.05, "Share of pairs kept out of SFT to measure it.")
    # supervised stage
    sft_epochs: float = hfield(6.0, "Passes over the pairs (0: no SFT; start GRPO from init).")
    sft_batch_size: int = hfield(64, "Pairs per SFT step.")
    sft_lr: float = hfield(1e-3, "SFT learning rate (AdamW, linear decay).")
    sft_warmup: float = hfield(
        0.05, "Share of SFT steps the learning rate warms up over (its first step has rate 0)."
    )
    # RL stage
    grpo_steps: int = hfield(150, "GRPO optimizer steps (0: stop after SFT).")
    grpo_prompts_per_step: int = hfield(8, "Distinct user prompts per GRPO step.")
    num_generations: int = hfield(4, "Rewrites per prompt: the group GRPO normalises within.")
    grpo_lr: float = hfield(1e-4, "GRPO learning rate (constant).")
    beta: float = hfield(0.02, "KL weight to the SFT model (0: no reference model).")
    temperature: float = hfield(1.0, "Sampling temperature of the rewrites during GRPO.")
    max_new_tokens: int = hfield(48, "Longest rewrite, in tokens.")
    # reward
    generator: str = hfield(
        "runs/demo/generator", "Stable Diffusion folder that draws the rewrites."
    )
    reward: str = hfield(
        "reward_model",
        "Image reward by name (rlhf.align.rewards): "
        "reward_model, clip_score, oracle_fidelity (research), ...",
    )
    reward_path: str | None = hfield(
        "runs/demo/reward", "Folder of that reward: the reward model, or the CLIP / oracle folder."
    )
    relevance: str = hfield(
        "clip",
        "Does the image still show the user's prompt? clip (CLIP "
        "score), oracle (research: the evaluation instrument), none.",
    )
    relevance_path: str | None = hfield(
        "runs/demo/clip", "CLIP or oracle folder of the relevance term."
    )
    image_weight: float = hfield(1.0, "Weight of the image reward (in batch standard deviations).")
    relevance_weight: float = hfield(0.5, "Weight of the relevance term (batch std units).")
    keep_weight: float = hfield(
        4.0, "Penalty per unit of the user's stated attributes the rewrite drops or contradicts."
    )
    images_per_rewrite: int = hfield(2, "Images drawn per rewrite (seeds shared in a group).")
    steps: int = hfield(20, "DDIM steps of the reward images.")
    guidance: float = hfield(3.0, "Classifier-free guidance of the reward images.")
    # run
    seed: int = hfield(0, "Seed of pairs, initialisation, sampling and reward images.")
    mixed_precision: str = hfield("no", "no | bf16 | fp16 for both stages (fp16 needs a GPU).")

    PRESETS = {
        "micro": {
            "n_layer": 1,
            "n_embd": 16,
            "n_head": 2,
            "vocab_size": 300,
            "max_length": 64,
            "pairs": 64,
            "grpo_prompts": 16,
            "sft_epochs": 1.0,
            "sft_batch_size": 16,
            "grpo_steps": 1,
            "grpo_prompts_per_step": 2,
            "num_generations": 2,
            "max_new_tokens": 12,
            "images_per_rewrite": 1,
            "steps": 2,
            "heldout_share": 0.1,
            "sft_warmup": 0.0,
        },
        "quick": {},
        "sd15": {
            "init": "",
            "data": "",
            "generator": "",
            "reward_path": "",
            "relevance_path": "",
            "images_per_rewrite": 1,
            "steps": 25,
            "guidance": 7.5,
            "grpo_prompts_per_step": 16,
            "num_generations": 8,
            "mixed_precision": "bf16",
            "max_new_tokens": 64,
            "max_length": 160,
        },
    }

    def validate(self) -> PromptConfig:
        def bad(key: str, why: str) -> ArtalignError:
            return ArtalignError(f"prompt config: {key}={getattr(self, key)!r} {why}")

        if self.relevance not in RELEVANCE:
            raise bad("relevance", f"is not one of {', '.join(RELEVANCE)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise bad("mixed_precision", f"is not one of {', '.join(MIXED_PRECISION)}")
        if self.num_generations < 2:
            raise bad("num_generations", "must be >= 2: GRPO compares rewrites of one prompt")
        for key in (
            "pairs",
            "sft_batch_size",
            "grpo_prompts_per_step",
            "images_per_rewrite",
            "steps",
            "max_new_tokens",
            "n_layer",
            "n_embd",
            "n_head",
        ):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        if self.sft_epochs < 0 or (self.sft_epochs == 0 and not self.init):
            raise bad("sft_epochs", "must be > 0, or 0 with init=DIR (an earlier run's sft/)")
        if self.grpo_steps < 0:
            raise bad("grpo_steps", "must be >= 0")
        if self.n_embd % self.n_head:
            raise bad("n_embd", f"must be a multiple of n_head={self.n_head}")
        if not 0.0 <= self.heldout_share < 0.5:
            raise bad("heldout_share", "must be in [0, 0.5)")
        if self.grpo_steps and self.relevance != "none" and not self.relevance_path:
            raise bad(
                "relevance_path",
                f"is needed by relevance={self.relevance}; set it or relevance=none",
            )
        return self
