"""The latent score network of engine/src/models/latent_score.rs in PyTorch, for `cargo xtask
bench latent --compare-torch`: loads our config.json and model.safetensors (same parameter
names), runs the inputs the Rust bench wrote at batch 1 (what the samplers use) and at the
training batch, checks ε̂ against candle's, and times both forward passes and one AdamW training
step (denoising score matching, as `dsm_loss` in engine/src/train/latent.rs) on the same
batch. Prints one JSON object.

usage: latent_score.py MODEL_DIR IO.safetensors ITERATIONS

IO.safetensors holds `x_t` [batch, positions, z_dim] and `t` [batch] (the forward input),
`eps_hat` and `eps_hat_1` (candle's ε̂ of the whole batch and of its first sequence alone),
`x0`, `noise` (the training step's clean latents and ε), `loss` [1] (candle's loss of that
batch before any update), `lr` and `weight_decay` [1] (the training defaults). Forward passes
at batch 1 run 5 × ITERATIONS times, the rest ITERATIONS times; each time is the median after
one warm-up run.
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from twin_common import load_twin, median_ms, time_training_step


class Block(nn.Module):
    """Pre-norm transformer block: self-attention over the positions, then a GELU MLP (tanh
    approximation, as candle's `gelu`) of width 4·d."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp_in = nn.Linear(d, 4 * d)
        self.mlp_out = nn.Linear(4 * d, d)

    def forward(self, x):
        b, l, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, l, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [b, heads, l, head_dim]
        mixed = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √head_dim) v
        x = x + self.attn_out(mixed.transpose(1, 2).reshape(b, l, d))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.norm2(x)), approximate="tanh"))


class LatentScore(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, z = cfg["d_model"], cfg["z_dim"]
        self.input = nn.Linear(z, d)
        self.position = nn.Parameter(torch.zeros(cfg["positions"], d))
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(d, cfg["heads"]) for _ in range(cfg["layers"])])
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.output = nn.Linear(d, z)
        # Frequencies from 1 down to 1/10000, rounded as the Rust code rounds them (f32
        # arithmetic, exp rounded once): the arguments 1000·t·f reach 1000, where one ulp of f
        # would already move sin by ~1e-4.
        half = d // 2
        exponent = torch.tensor(-math.log(10000.0), dtype=torch.float32) * torch.arange(half, dtype=torch.float32) / half
        self.register_buffer("freqs", torch.exp(exponent.double()).float(), persistent=False)

    def sigma(self, t):
        """σ(t) = √(1 − m(t)²), m(t) = exp(−¼t²(β1 − β0) − ½tβ0), in f32 as the network does."""
        b0, b1 = self.cfg["beta_min"], self.cfg["beta_max"]
        log_m = t * t * (-0.25 * (b1 - b0)) - t * (0.5 * b0)
        return (1.0 - torch.exp(log_m * 2.0)).clamp(1e-12, 1.0).sqrt()

    def forward(self, x, t):
        """ε̂ [b, positions, z_dim] of x [b, positions, z_dim] at times t [b]."""
        args = (t[:, None] * 1000.0) * self.freqs[None]
        temb = self.time(torch.cat([args.sin(), args.cos()], 1))  # [b, d]
        h = self.input(x) + self.position[None] + temb[:, None]
        for block in self.blocks:
            h = block(h)
        correction = self.output(self.norm(h))
        # The σ(t)·x skip: the exact ε of standard normal data, the network adds a correction.
        return x * self.sigma(t)[:, None, None] + correction


def dsm_loss(model, x0, t, noise):
    """Denoising score matching with ε-prediction: ‖ε̂(m(t)x₀ + σ(t)ε, t) − ε‖², averaged.
    m and σ are computed in f64 and rounded, as VpSde does in Rust."""
    b0, b1 = model.cfg["beta_min"], model.cfg["beta_max"]
    t64 = t.double()
    m = torch.exp(-0.25 * t64 * t64 * (b1 - b0) - 0.5 * t64 * b0)
    s = (1.0 - m * m).clamp(min=1e-12).sqrt()
    x_t = x0 * m.float()[:, None, None] + noise * s.float()[:, None, None]
    return ((model(x_t, t) - noise) ** 2).mean()


def forward_flops(model, x, t):
    """Multiply-adds ×2 of every linear layer (counted by hooks) and of the two attention
    matmuls (q kᵀ and the weighted sum of v: 2·b·l·l·d each per block) in one forward pass."""
    total = [0]

    def hook(module, inputs, output):
        total[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x, t)
    for h in handles:
        h.remove()
    b, l, _ = x.shape
    return total[0] + len(model.blocks) * 2 * (2 * b * l * l * model.cfg["d_model"])


def main():
    cfg, model, io, iterations = load_twin(LatentScore)
    x, t, x0, noise = io["x_t"], io["t"], io["x0"], io["noise"]
    x1, t1 = x[:1].contiguous(), t[:1].contiguous()
    model.eval()
    with torch.no_grad():
        diff = (model(x, t) - io["eps_hat"]).abs().max().item()
        diff_1 = (model(x1, t1) - io["eps_hat_1"]).abs().max().item()
        loss = dsm_loss(model, x0, t, noise).item()

    def forward(x, t):
        with torch.no_grad():
            model(x, t)

    forward_1_ms = median_ms(lambda: forward(x1, t1), 5 * iterations)
    forward_ms = median_ms(lambda: forward(x, t), iterations)
    step_ms, loss_after = time_training_step(
        model, lambda: dsm_loss(model, x0, t, noise), iterations, io["lr"].item(), io["weight_decay"].item())
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": x.shape[0],
        "forward_flops": forward_flops(model, x, t),
        "forward_1_flops": forward_flops(model, x1, t1),
        "forward_ms": forward_ms,
        "forward_1_ms": forward_1_ms,
        "train_step_ms": step_ms,
        "max_abs_diff": diff,
        "max_abs_diff_1": diff_1,
        "loss": loss,
        "loss_after_steps": loss_after,
    }))


if __name__ == "__main__":
    main()
