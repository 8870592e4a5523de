"""The generator every stage samples from: a local Stable Diffusion folder behind one interface.

- sd_folder.py  load and check an SD folder (ours or any SD-1.x/2.x diffusers folder)
- ddim.py       the DDIM step and its Gaussian log-probability (DDPO's policy)
- generator.py  `Generator`: encode prompts, sample with guidance, re-score steps, LoRA
- lora.py       peft LoRA adapters saved in the format `pipe.load_lora_weights` reads
- outputs.py    `SampleOutput` and `Trajectory`
"""

from base_models.generator.ddim import DDIM, gaussian_log_prob
from base_models.generator.generator import Generator, check_sampling_args
from base_models.generator.lora import LORA_TARGETS, lora_config
from base_models.generator.outputs import SampleOutput, Trajectory
from base_models.generator.sd_folder import SDComponents, check_sd_folder, load_sd_folder

__all__ = [
    "DDIM",
    "LORA_TARGETS",
    "Generator",
    "SDComponents",
    "SampleOutput",
    "Trajectory",
    "check_sampling_args",
    "check_sd_folder",
    "gaussian_log_prob",
    "load_sd_folder",
    "lora_config",
]
