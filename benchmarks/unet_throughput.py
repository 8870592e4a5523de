"""UNet training throughput: images per second of one optimizer step, by UNet variant.

    python benchmarks/unet_throughput.py [--preset quick] [--batch 64] [--steps 6]

Times forward + backward + AdamW of a randomly initialised UNet of the preset on random
latents and caption states of the quick shapes (16x16x4 latents, 48 tokens x 64), after two
warm-up steps, for the preset and for variants that trade binding capacity or memory layout for
speed. Ratios are against the preset measured in the same run. Training-step cost does not
depend on the data, so no data set is needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base_models.config import load_config  # noqa: E402
from base_models.unet import UNetConfig  # noqa: E402
from base_models.unet.model import build_unet  # noqa: E402

VARIANTS = {
    "preset": [],
    "no 8x8 attention (attention_levels=2)": ["attention_levels=2"],
    "no mid attention": ["mid_attention=false"],
    "wider top level (32,64,128)": ["block_out_channels=32,64,128", "norm_num_groups=16"],
}


def step_seconds(overrides: list[str], preset: str, batch: int, steps: int, channels_last: bool):
    """Mean seconds of one training step, and the UNet's parameter count."""
    torch.manual_seed(0)
    cfg = load_config(UNetConfig, preset, overrides=overrides)
    unet = build_unet(cfg, cross_attention_dim=64, sample_size=16, latent_channels=4)
    x = torch.randn(batch, 4, 16, 16)
    if channels_last:
        layout = torch.channels_last
        unet, x = unet.to(memory_format=layout), x.to(memory_format=layout)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=True)
    t = torch.randint(0, cfg.num_train_timesteps, (batch,))
    states = torch.randn(batch, 48, 64)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = unet(x, t, encoder_hidden_states=states).sample.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps, sum(p.numel() for p in unet.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    a = p.parse_args()
    rows = [(name, over, False) for name, over in VARIANTS.items()]
    rows.append(("preset, channels_last", [], True))
    print(
        f"UNet training step, preset {a.preset}, batch {a.batch}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| variant | params | s/step | images/s | vs preset |\n|---|---|---|---|---|")
    base = None
    for name, over, cl in rows:
        seconds, params = step_seconds(over, a.preset, a.batch, a.steps, cl)
        rate = a.batch / seconds
        base = base or rate
        print(
            f"| {name} | {params / 1e6:.2f}M | {seconds:.3f} | {rate:.0f} | {rate / base:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
