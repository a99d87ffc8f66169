"""Where a fine-tuned encoder loses: MSE, table bits of y and z, and the densities of rounded
and noisy symbols, base vs tuned, at levels 0 and 8 on the 8 held-out photos.

Run from the checkout: python results/effort/encoder-finetune/probe.py RUN/checkpoint.pt
"""

import sys
from pathlib import Path

import numpy as np
import torch

from aecodec.export.entropy import gaussian_likelihood, scale_from_index
from aecodec.export.loop import Recipe, load_checkpoint
from aecodec.export.tasks.encoder import EncoderTask

torch.set_num_threads(1)
task = EncoderTask(Path("../shared/data/train"), Path("checkpoints/hyperprior.pt"), val_images=8)
task.recipe = Recipe(crop=256)
base, tuned = task.build("cpu"), task.build("cpu")
tuned.load_state_dict(load_checkpoint(Path(sys.argv[1]))["model"])
task._load()
tw = task.twin
for k in (0, 8):
    for name, m in (("base", base), ("tuned", tuned)):
        m.eval()
        tot = np.zeros(6)
        with torch.no_grad():
            for a in task._val:
                h, w = a.shape[0] // 64 * 64, a.shape[1] // 64 * 64
                x = torch.from_numpy(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
                y = m.g_a(x).float() * task.gain[k][None, :, None, None]
                z_hat = m.h_a(y).float().round()
                mu, idx = tw.hyper_decode(z_hat)
                mu, idx = mu[..., : y.shape[2], : y.shape[3]], idx[..., : y.shape[2], : y.shape[3]]
                v = y - mu
                s = v.round()
                y_hat = (s + mu) * task.inv_gain[k][None, :, None, None]
                pix = tw.synthesize(y_hat.contiguous(memory_format=torch.channels_last))
                mse = float(((pix.float() - x * 255) ** 2).mean())
                npx = x.shape[2] * x.shape[3]
                nz = torch.arange(z_hat.shape[1])[None, :, None, None].float()
                table_y = tw.bits(tw.y_logp, s, idx.clamp(0, tw.y_logp[0].shape[0] - 1))
                table_z = tw.bits(tw.z_logp, z_hat, nz.expand_as(z_hat))
                scale = scale_from_index(idx)
                rounded_y = -torch.log2(gaussian_likelihood(s, scale)).sum()
                noisy_y = -torch.log2(gaussian_likelihood(v + torch.rand_like(v) - 0.5,
                                                          scale)).sum()
                dens_z = -torch.log2(task.bottleneck.likelihood(z_hat)).sum()
                tot += np.array([mse, *(float(b) / npx for b in (table_y, table_z, rounded_y,
                                                                  noisy_y, dens_z))])
        tot /= len(task._val)
        cost = task.lambdas[k] * tot[0] + tot[1] + tot[2]
        print(f"{k} {name} mse {tot[0]:.3f}  tables y {tot[1]:.4f} z {tot[2]:.4f}  "
              f"dens-rounded y {tot[3]:.4f}  noisy y {tot[4]:.4f}  z dens {tot[5]:.4f}  "
              f"cost {cost:.4f}")
