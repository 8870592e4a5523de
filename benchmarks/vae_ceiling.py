"""What the VAE lets through: the oracle reads held-out images and their VAE reconstructions.

    python benchmarks/vae_ceiling.py --vae runs/demo/vae/vae --oracle runs/demo/oracle [--n 400]
        [--latent-noise 0.1,0.2,0.4]

The generator can draw no better than its VAE decodes, so the oracle's accuracy on
reconstructions is the ceiling of the generator's. Prints originals vs reconstructions (posterior
means) on the generator evaluation's single-object prompt scenes, and saves a comparison grid.
`--latent-noise` also decodes the latents plus Gaussian noise of each sigma (in the scaled latent
space the UNet works in, where latents have unit variance): how much a small UNet error costs
after decoding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from base_models.generator import SampleOutput
from base_models.generator.evaluate import prompt_scenes, score_prompt_set
from base_models.imaging import make_grid
from base_models.oracle import AttributeOracle, images_to_tensor, read_images
from base_models.vae.evaluate import load_vae


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", type=Path, required=True, help="a VAE folder (train-vae's OUT/vae)")
    p.add_argument("--oracle", type=Path, required=True)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--grid", type=Path, default=None, help="PNG: 16 originals over their recons")
    p.add_argument("--latent-noise", default="", help="comma-separated sigmas, e.g. 0.1,0.2,0.4")
    a = p.parse_args()

    vae = load_vae(a.vae)
    pairs = prompt_scenes("single", a.n)
    x = images_to_tensor([im for _, im in pairs], 32)
    scenes = [s for s, _ in pairs]
    scale = float(vae.config.scaling_factor)
    gen = torch.Generator().manual_seed(0)

    def round_trip(sigma: float) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for c in x.split(128):
                z = vae.encode(c * 2 - 1).latent_dist.mean
                z = z + sigma / scale * torch.randn(z.shape, generator=gen)
                out.append(((vae.decode(z).sample + 1) / 2).clamp(0, 1))
        return torch.cat(out)

    rec = round_trip(0.0)
    sets = [("originals", x), ("reconstructions", rec)]
    sets += [(f"latent noise {s}", round_trip(float(s))) for s in a.latent_noise.split(",") if s]
    oracle = AttributeOracle.load(a.oracle)
    print(f"{'images':<20}{'colour':>8}{'shape':>8}{'both':>8}{'PSNR dB':>9}")
    for name, imgs in sets:
        m = score_prompt_set(read_images(oracle, imgs), scenes)
        mse = (imgs - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        psnr = "-" if name == "originals" else f"{(10 * torch.log10(1 / mse)).mean():.2f}"
        print(
            f"{name:<20}{m['colour_acc']:>8.3f}{m['shape_acc']:>8.3f}{m['both_acc']:>8.3f}{psnr:>9}"
        )
    if a.grid:
        images = SampleOutput(torch.cat([x[:16], rec[:16]]), [], []).images
        make_grid(images, ncols=16, scale=4).save(a.grid)


if __name__ == "__main__":
    main()
