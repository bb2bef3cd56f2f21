"""Shared by the PyTorch twins (`roll_unet.py`, `latent_score.py`, `music_vae.py`,
`band_vae.py`): the command line, loading our config.json and model.safetensors into a twin,
and timing."""

import json
import sys
import time

import torch
from safetensors.torch import load_file


def load_twin(model_class):
    """Parse `MODEL_DIR IO.safetensors ITERATIONS`; return (cfg, model, io tensors, iterations)
    with our weights loaded into `model_class(cfg)` (every name must match)."""
    model_dir, io_path, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    model = model_class(cfg)
    model.load_state_dict(load_file(f"{model_dir}/model.safetensors"), strict=True)
    return cfg, model, load_file(io_path), iterations


def median_ms(fn, iterations):
    """Median wall time of `fn()` in milliseconds over `iterations` runs after one warm-up."""
    fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def time_training_step(model, loss, iterations, lr, weight_decay):
    """Switch `model` to training and time one AdamW step of `loss()` with [`median_ms`]: return
    (milliseconds, the loss after the ITERATIONS + 1 steps)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()

    step_ms = median_ms(step, iterations)
    with torch.no_grad():
        loss_after = loss().item()
    return step_ms, loss_after
