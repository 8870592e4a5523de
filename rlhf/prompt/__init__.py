"""The prompt optimiser: a small language model that rewrites short prompts into rich ones.

Trained with TRL (SFTTrainer on caption pairs, then GRPOTrainer against the image reward); see
`rlhf.prompt.train`. `PromptRewriter` loads a trained folder for inference.
"""

from rlhf.prompt.rewriter import PromptRewriter

__all__ = ["PromptRewriter"]
