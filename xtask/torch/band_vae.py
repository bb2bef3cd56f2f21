"""The band player's recurrent multimodal VAE of engine/src/models/band.rs in PyTorch, for
`cargo xtask bench band --compare-torch`: loads our config.json and model.safetensors (same
parameter names; the GRU is PyTorch's, whose gate order and formula candle's follows), runs the
batch the Rust bench wrote, checks the next-bar logits and the KL against candle's, and times
the training forward pass, one AdamW step of the training loss (`batch_loss` in
engine/src/train/band.rs: reconstruction + β·KL + the scale, rhythm and harmony terms) and one
live next-bar answer at batch 1 (posterior of the heard bar, one GRU step, the decoders). Prints
one JSON object.

usage: band_vae.py MODEL_DIR IO.safetensors ITERATIONS

IO.safetensors holds per track k `inputs_k`, `targets_k` [batch, seq, cells_k] and `out_of_key_k`
[batch, 1, pitches_k]; `present` [batch, seq, tracks]; `eps` [batch, seq, latent]; candle's
`logits_k` and `kl` [batch, seq] (posterior means) and `loss` [1] (with `eps`); `beta`, `lr`,
`weight_decay`, `aux` [3] (scale, rhythm, harmony weights). The live answer uses the first
sequence's first bar. Each time is the median of ITERATIONS runs (the live answer 10 × as
many) after one warm-up run.
"""

import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from twin_common import load_twin, median_ms, time_training_step


class Mlp(nn.Module):
    """Linear → ReLU → Linear (`hidden`, `out`), a bar encoder's or decoder's shape."""

    def __init__(self, cin, hidden, cout):
        super().__init__()
        self.hidden = nn.Linear(cin, hidden)
        self.out = nn.Linear(hidden, cout)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


class BandVae(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        cells = [2 * cfg["steps"] * t["pitches"] for t in cfg["tracks"]]
        self.latent = cfg["latent"]
        self.encoders = nn.ModuleList([Mlp(c, cfg["encoder_hidden"], 2 * self.latent) for c in cells])
        self.rnn = nn.GRU(self.latent, cfg["rnn_hidden"], batch_first=True)
        self.decoders = nn.ModuleList([Mlp(cfg["rnn_hidden"], cfg["decoder_hidden"], c) for c in cells])

    def posterior(self, bars, present):
        """Product of the present tracks' Gaussian experts and N(0, I): (mean, logvar) [n, latent]."""
        precision_sum = 1.0
        weighted_mean = 0.0
        for k, (enc, bar) in enumerate(zip(self.encoders, bars)):
            out = enc(bar)
            mean, logvar = out[:, : self.latent], out[:, self.latent :].clamp(-8.0, 8.0)
            precision = torch.exp(-logvar) * present[:, k : k + 1]
            precision_sum = precision_sum + precision
            weighted_mean = weighted_mean + precision * mean
        return weighted_mean / precision_sum, -torch.log(precision_sum)

    def forward(self, bars, present, eps):
        """Next-bar logits per track [batch, seq, cells_k] and the KL of every bar [batch, seq]."""
        b, seq, tracks = present.shape
        flat = [x.reshape(b * seq, -1) for x in bars]
        mean, logvar = self.posterior(flat, present.reshape(b * seq, tracks))
        z = mean if eps is None else mean + torch.exp(0.5 * logvar) * eps.reshape(b * seq, -1)
        hs, _ = self.rnn(z.reshape(b, seq, self.latent))
        logits = [d(hs) for d in self.decoders]
        kl = 0.5 * (mean * mean + logvar.exp() - 1.0 - logvar).sum(-1)
        return logits, kl.reshape(b, seq)

    def next_bar(self, bars, present, h):
        """One live step: fold the heard bar into the GRU state h [1, n, hidden], decode."""
        mean, _ = self.posterior(bars, present)
        _, h = self.rnn(mean[:, None], h)
        return [d(h[0]) for d in self.decoders], h


def pitch_class_matrix(pitch_lo, pitches):
    m = torch.zeros(pitches, 12)
    for p in range(pitches):
        m[p, (pitch_lo + p) % 12] = 1.0
    return m


def batch_loss(model, io, eps):
    """As `batch_loss` in engine/src/train/band.rs with the default (all-on) auxiliary terms."""
    cfg = model.cfg
    tracks = len(cfg["tracks"])
    present = io["present"]
    n, seq, _ = present.shape
    logits, kl = model([io[f"inputs_{k}"] for k in range(tracks)], present, eps)
    scale_w, rhythm_w, harmony_w = io["aux"].tolist()
    reconstruction, onsets, pcs, scale = 0.0, None, None, 0.0
    for k, spec in enumerate(cfg["tracks"]):
        y = io[f"targets_{k}"]
        reconstruction = reconstruction + F.binary_cross_entropy_with_logits(logits[k], y) * y.shape[-1]
        p, steps = spec["pitches"], cfg["steps"]
        prob = torch.sigmoid(logits[k]).reshape(n * seq, 2, steps, p)
        target = y.reshape(n * seq, 2, steps, p)
        step_counts = (prob[:, 0].sum(2), target[:, 0].sum(2))
        onsets = step_counts if onsets is None else (onsets[0] + step_counts[0], onsets[1] + step_counts[1])
        pcm = pitch_class_matrix(spec["pitch_lo"], p)
        track_pcs = (prob[:, 1].sum(1) @ pcm, target[:, 1].sum(1) @ pcm)
        pcs = track_pcs if pcs is None else (pcs[0] + track_pcs[0], pcs[1] + track_pcs[1])
        ook = io[f"out_of_key_{k}"][:, None].expand(n, seq, steps, p).reshape(n * seq, steps, p)
        scale = scale + (prob[:, 0] * ook).sum() / (n * seq)
    total = reconstruction + kl.mean() * io["beta"].item()
    total = total + scale * scale_w
    total = total + ((onsets[0] - onsets[1]) ** 2).mean() * rhythm_w
    pred = pcs[0] / (pcs[0].sum(1, keepdim=True) + 1e-6)
    truth = pcs[1] / (pcs[1].sum(1, keepdim=True) + 1e-6)
    total = total + (-(truth * torch.log(pred + 1e-6)).sum(1).mean()) * harmony_w
    return total


def forward_flops(cfg, rows):
    """Matmul flops (2·m·n·k) of encoders, GRU and decoders over `rows` bars."""
    cells = [2 * cfg["steps"] * t["pitches"] for t in cfg["tracks"]]
    he, z, hr, hd = cfg["encoder_hidden"], cfg["latent"], cfg["rnn_hidden"], cfg["decoder_hidden"]
    per_bar = sum(c * he + he * 2 * z + hr * hd + hd * c for c in cells) + 3 * hr * (z + hr)
    return 2 * rows * per_bar


def main():
    cfg, model, io, iterations = load_twin(BandVae)
    tracks = len(cfg["tracks"])
    bars = [io[f"inputs_{k}"] for k in range(tracks)]
    present, eps = io["present"], io["eps"]
    b, seq, _ = present.shape
    model.eval()
    with torch.no_grad():
        logits, kl = model(bars, present, None)
        loss = batch_loss(model, io, eps).item()
    logit_diff = max((l - io[f"logits_{k}"]).abs().max().item() for k, l in enumerate(logits))
    kl_diff = (kl - io["kl"]).abs().max().item()

    def forward():
        with torch.no_grad():
            model(bars, present, eps)

    live_bars = [x[:1, 0] for x in bars]
    live_present = present[:1, 0]
    h0 = torch.zeros(1, 1, cfg["rnn_hidden"])

    def next_bar():
        with torch.no_grad():
            model.next_bar(live_bars, live_present, h0)

    forward_ms = median_ms(forward, iterations)
    live_ms = median_ms(next_bar, 10 * iterations)
    step_ms, loss_after = time_training_step(
        model, lambda: batch_loss(model, io, eps), iterations, io["lr"].item(), io["weight_decay"].item())
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "forward_flops": forward_flops(cfg, b * seq),
        "live_flops": forward_flops(cfg, 1),
        "forward_ms": forward_ms,
        "train_step_ms": step_ms,
        "live_ms": live_ms,
        "max_abs_diff_logits": logit_diff,
        "max_abs_diff_kl": kl_diff,
        "loss": loss,
        "loss_after_steps": loss_after,
    }))


if __name__ == "__main__":
    main()
