"""Where a fine-tuned encoder loses: MSE, table bits of y and z, and the densities of rounded
and noisy symbols, base vs tuned, at levels 0 and 8 on the 8 held-out photos.
Run from the checkout: python results/effort/encoder-finetune/probe.py RUN/checkpoint.pt"""
import torch, numpy as np, sys
from pathlib import Path
from aecodec.export.tasks.encoder import EncoderTask
from aecodec.export.loop import Recipe, load_checkpoint
from aecodec.export.entropy import gaussian_likelihood, scale_from_index
torch.set_num_threads(1)
task = EncoderTask(Path("../shared/data/train"), Path("checkpoints/hyperprior.pt"), val_images=8)
task.recipe = Recipe(crop=256)
m0 = task.build("cpu")
m1 = task.build("cpu")
st = load_checkpoint(Path(sys.argv[1]))
m1.load_state_dict(st["model"])
task._load()
tw = task.twin
for k in (0, 8):
  for name, m in (("base", m0), ("tuned", m1)):
    m.eval()
    tot = np.zeros(6)
    with torch.no_grad():
      for a in task._val:
        h, w = a.shape[0] // 64 * 64, a.shape[1] // 64 * 64
        x = torch.from_numpy(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
        y = m.g_a(x).float() * task.gain[k][None, :, None, None]
        z = m.h_a(y).float()
        zh = z.round()
        mu, idx = tw.hyper_decode(zh)
        mu, idx = mu[..., :y.shape[2], :y.shape[3]], idx[..., :y.shape[2], :y.shape[3]]
        v = y - mu; s = v.round()
        yh = (s + mu) * task.inv_gain[k][None, :, None, None]
        pix = tw.synthesize(yh.contiguous(memory_format=torch.channels_last))
        mse = float(((pix.float() - x * 255) ** 2).mean())
        npx = x.shape[2] * x.shape[3]
        nz = torch.arange(z.shape[1])[None, :, None, None].float()
        tb_y = float(tw.bits(tw.y_logp, s, idx.clamp(0, tw.y_logp[0].shape[0] - 1))) / npx
        tb_z = float(tw.bits(tw.z_logp, zh, nz.expand_as(zh))) / npx
        sc = scale_from_index(idx)
        dr_y = float(-torch.log2(gaussian_likelihood(s, sc)).sum()) / npx
        nn_y = float(-torch.log2(gaussian_likelihood(v + torch.rand_like(v) - .5, sc)).sum()) / npx
        dr_z = float(-torch.log2(task.bottleneck.likelihood(zh)).sum()) / npx
        tot += np.array([mse, tb_y, tb_z, dr_y, nn_y, dr_z])
    tot /= len(task._val)
    print(k, name, "mse %.3f  tables y %.4f z %.4f  dens-rounded y %.4f  noisy y %.4f  z dens %.4f  cost %.4f" % (*tot, task.lambdas[k]*tot[0]+tot[1]+tot[2]))
