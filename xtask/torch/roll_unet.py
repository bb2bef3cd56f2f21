"""The roll UNet of engine/src/models/roll.rs in PyTorch, for `cargo xtask bench roll
--compare-torch`: loads our config.json and model.safetensors (same parameter names), runs the
input the Rust bench wrote, checks x̂_0 against candle's, and times a forward pass and one AdamW
training step at the same batch. Prints one JSON object.

usage: roll_unet.py MODEL_DIR IO.safetensors ITERATIONS
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from twin_common import load_twin, median_ms, time_training_step


class ResBlock(nn.Module):
    def __init__(self, cin, cout, cfg):
        super().__init__()
        tc = cfg["base_channels"] * 4
        self.norm1 = nn.GroupNorm(cfg["groups"], cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tc, cout)
        self.norm2 = nn.GroupNorm(cfg["groups"], cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Level(nn.Module):
    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()


class RollUnet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        base, mults = cfg["base_channels"], cfg["channel_mults"]
        levels, tc = len(mults), base * 4
        self.time_embed = nn.Sequential(nn.Linear(base, tc), nn.SiLU(), nn.Linear(tc, tc))
        c0 = base * mults[0]
        # x_t, then for a conditioned model the known onset, known sustain and known-cell planes.
        self.conv_in = nn.Conv2d(5 if cfg.get("conditioned") else 2, c0, 3, padding=1)
        skips, ch = [c0], c0
        self.down = nn.ModuleList()
        for i in range(levels):
            level, cout = Level(), base * mults[i]
            for _ in range(cfg["res_blocks"]):
                level.res.append(ResBlock(ch, cout, cfg))
                ch = cout
                skips.append(ch)
            if i + 1 < levels:
                skips.append(ch)
                level.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
            else:
                level.down = None
            self.down.append(level)
        self.mid = nn.ModuleList([ResBlock(ch, ch, cfg), ResBlock(ch, ch, cfg)])
        up = [None] * levels
        for i in reversed(range(levels)):
            level, cout = Level(), base * mults[i]
            for _ in range(cfg["res_blocks"] + 1):
                level.res.append(ResBlock(ch + skips.pop(), cout, cfg))
                ch = cout
            if i > 0:
                # Before upsampling it maps to the next level's channels, after it keeps them.
                cout = base * mults[i - 1] if cfg.get("conv_before_upsample") else ch
                level.up = nn.Conv2d(ch, cout, 3, padding=1)
                ch = cout
            else:
                level.up = None
            up[i] = level
        self.up = nn.ModuleList(up)
        self.norm_out = nn.GroupNorm(cfg["groups"], ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, 2, 3, padding=1)

    def forward(self, x, t):
        half = self.cfg["base_channels"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        temb = F.silu(self.time_embed(torch.cat([args.sin(), args.cos()], 1)))
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block in level.res:
                h = block(h, temb)
                skips.append(h)
            if level.down is not None:
                h = level.down(h)
                skips.append(h)
        for block in self.mid:
            h = block(h, temb)
        for level in reversed(self.up):
            for block in level.res:
                h = block(torch.cat([h, skips.pop()], 1), temb)
            if level.up is None:
                pass
            elif self.cfg.get("conv_before_upsample"):
                h = F.interpolate(level.up(h), scale_factor=2, mode="nearest")
            else:
                h = level.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def forward_flops(model, x, t):
    """Multiply-adds ×2 of every convolution and linear layer in one forward pass."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += 2 * output.numel() * module.in_channels * k
        elif isinstance(module, nn.Linear):
            total[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x, t)
    for h in handles:
        h.remove()
    return total[0]


def main():
    cfg, model, io, iterations = load_twin(RollUnet)
    x, t, x0, expected = io["x_t"], io["t"], io["x0"], io["logits"]
    model.eval()
    with torch.no_grad():
        logits = model(x, t)
    diff = (torch.sigmoid(logits) - torch.sigmoid(expected)).abs().max().item()
    logit_diff = (logits - expected).abs().max().item()

    def forward():
        with torch.no_grad():
            model(x, t)

    forward_ms = median_ms(forward, iterations)
    step_ms, _ = time_training_step(
        model, lambda: F.binary_cross_entropy_with_logits(model(x, t), x0), iterations, 1e-3, 0.01)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": x.shape[0],
        "forward_flops": forward_flops(model, x, t),
        "forward_ms": forward_ms,
        "train_step_ms": step_ms,
        "max_abs_diff_x0": diff,
        "max_abs_diff_logits": logit_diff,
    }))


if __name__ == "__main__":
    main()
