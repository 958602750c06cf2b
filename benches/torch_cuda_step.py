"""The official VDVAE training step (forward, backward, grad clip, AdamW) in PyTorch on
CUDA, for benches/gpu_protocol.sh: the GPU anchor beside `cargo bench --bench train_step`.

  python3 benches/torch_cuda_step.py official OFFICIAL_VDVAE_DIR CONFIG.json [BATCH] [STEPS]

OFFICIAL_VDVAE_DIR is a checkout of openai/vdvae (never commit it); CONFIG.json a vdvae
config (docs/configs/rgb-medium.json). Prints one JSON line with ms_per_step and
images_per_s, timed after a warm-up step with the GPU synchronised."""
import json, sys, time

import numpy as np
import torch


class H(dict):
    __getattr__ = dict.get

    def __setattr__(self, k, v):
        self[k] = v


def official(checkout, cfg, batch=16, steps=10):
    sys.path.insert(0, checkout)
    from vae import VAE

    h = H(bottleneck_multiple=0.25, custom_width_str="", no_bias_above=64, num_mixtures=10,
          image_channels=3, dataset="custom", data_shift=-120.63838, data_scale=1 / 64.16736)
    h.update(json.load(open(cfg)))
    torch.manual_seed(0)
    dev = torch.device("cuda")
    m = VAE(h).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=h.get("lr", 2e-4), betas=(0.9, 0.9), weight_decay=h.get("wd", 0.0))
    c = h.image_channels
    x = np.random.default_rng(0).integers(0, 256, (int(batch), h.image_size, h.image_size, c), dtype=np.uint8)
    xt = torch.as_tensor(x).float().to(dev)
    xin, target = (xt + h.data_shift) * h.data_scale, xt / 127.5 - 1.0

    def step():
        opt.zero_grad()
        stats = m.forward(xin, target)
        stats["elbo"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), h.get("grad_clip", 200.0))
        opt.step()

    step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(int(steps)):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / int(steps)
    print(json.dumps({"config": cfg, "batch": int(batch), "device": torch.cuda.get_device_name(0),
                      "ms_per_step": dt * 1e3, "images_per_s": int(batch) / dt}))


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "official":
        sys.exit(__doc__)
    official(*sys.argv[2:])
