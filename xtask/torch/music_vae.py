"""The flat 2-bar MusicVAE of engine/src/models/music_vae.rs and the hierarchical 16-bar one of
engine/src/models/hier_vae.rs (a config.json with `bars`) in PyTorch, for `cargo xtask bench
latent --compare-torch`: loads our config.json and model.safetensors (same parameter names:
the LSTMs are `nn.LSTM`s, whose names, gate order (i, f, g, o) and two biases
engine/src/nn/lstm.rs keeps), runs the token windows the Rust bench wrote, checks the encoder's μ
and the teacher-forced decoder logits (z = μ) against candle's, and times encode + decode at the
training batch, one AdamW training step (reconstruction cross-entropy + β·max(KL, λ), as
`batch_loss` in engine/src/train/vae.rs) on the same batch, and the argmax decoding of a few
latents (16 bars: 8 latents of the flat model, 1 of the hierarchical one; what the plugin does
after sampling), whose tokens must equal candle's. Prints one JSON object.

usage: music_vae.py MODEL_DIR IO.safetensors ITERATIONS

IO.safetensors holds `tokens` [batch, steps] (i64), `noise` [batch, z_dim] (the training step's
reparameterization noise), `mu` and `logits` (candle's μ and teacher-forced logits with z = μ),
`z8` [latents, z_dim] and `decoded8` [latents, steps] (i64; candle's argmax decoding of z8), `loss` [1]
(candle's loss of the batch before any update) and `lr`, `weight_decay`, `beta`, `free_bits`
[1] (the training defaults). The argmax decoding runs 5 × ITERATIONS times, the rest ITERATIONS times; each time
is the median after one warm-up run.
"""

import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from twin_common import load_twin, median_ms, time_training_step


class MusicVae(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, z = cfg["classes"], cfg["z_dim"]
        he, hd = cfg["encoder_hidden"], cfg["decoder_hidden"]
        self.encoder = nn.LSTM(c, he, batch_first=True, bidirectional=True)
        self.mu = nn.Linear(2 * he, z)
        self.log_var = nn.Linear(2 * he, z)
        self.decoder_init = nn.Linear(z, 2 * hd)
        self.decoder = nn.LSTM(c + z, hd, batch_first=True)
        self.output = nn.Linear(hd, c)

    def one_hot(self, tokens):
        return F.one_hot(tokens, self.cfg["classes"]).float()

    def encode(self, tokens):
        """μ and log σ² [b, z_dim] of tokens [b, steps]: linear maps of the last forward and the
        first backward hidden state of the bidirectional LSTM."""
        _, (h, _) = self.encoder(self.one_hot(tokens))  # h: [2, b, H]
        h = torch.cat([h[0], h[1]], 1)
        return self.mu(h), self.log_var(h)

    def initial_state(self, z):
        """The decoder's (h, c) at step 0: tanh(W z + b), split in two."""
        h, c = torch.tanh(self.decoder_init(z)).chunk(2, 1)
        return h[None].contiguous(), c[None].contiguous()

    def decode_teacher_forced(self, z, tokens):
        """Logits [b, steps, classes]; step s reads token s − 1 (zeros at step 0) and z."""
        b, steps = tokens.shape
        previous = torch.cat([torch.zeros(b, 1, self.cfg["classes"]), self.one_hot(tokens[:, :-1])], 1)
        inputs = torch.cat([previous, z[:, None].expand(b, steps, z.shape[1])], 2)
        hs, _ = self.decoder(inputs, self.initial_state(z))
        return self.output(hs)

    def forward(self, tokens, noise=None):
        mu, log_var = self.encode(tokens)
        z = mu if noise is None else mu + torch.exp(0.5 * log_var) * noise
        return self.decode_teacher_forced(z, tokens), mu, log_var

    def decode_argmax(self, z):
        """Autoregressive decoding of z [b, z_dim], feeding back each step's argmax: [b, steps]."""
        out = []
        previous = torch.zeros(z.shape[0], self.cfg["classes"])
        argmax_steps(self, self.initial_state(z), previous, z, self.cfg["steps"], out)
        return torch.stack(out, 1)


    def forward_flops(self, batch):
        """Matmul flops (2·m·n·k) of encode + teacher-forced decode; one-hot inputs count as
        dense, as PyTorch multiplies them (candle looks their rows up, so its GFLOP/s are
        effective)."""
        cfg = self.cfg
        c, z, steps, he = cfg["classes"], cfg["z_dim"], cfg["steps"], cfg["encoder_hidden"]
        encoder = 2 * lstm_flops(batch, steps, c, he) + 2 * (2 * batch * 2 * he * z)
        return encoder + self.decode_flops(batch)

    def decode_flops(self, batch):
        """Matmul flops of the decoder over all steps (teacher-forced or autoregressive)."""
        cfg = self.cfg
        c, z, steps, hd = cfg["classes"], cfg["z_dim"], cfg["steps"], cfg["decoder_hidden"]
        return 2 * batch * z * 2 * hd + lstm_flops(batch, steps, c + z, hd) + 2 * batch * steps * hd * c


class HierVae(nn.Module):
    """Bar encoder (bidirectional, every bar of the batch at once) → song encoder over the bar
    summaries → μ, log σ²; conductor LSTM (z at each of its steps) → one embedding per bar; bar
    decoder LSTM started from each embedding, reading [previous token, embedding]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, z = cfg["classes"], cfg["z_dim"]
        hb, he = cfg["bar_encoder_hidden"], cfg["encoder_hidden"]
        hc, e, hd = cfg["conductor_hidden"], cfg["bar_embedding"], cfg["decoder_hidden"]
        self.bar_encoder = nn.LSTM(c, hb, batch_first=True, bidirectional=True)
        self.encoder = nn.LSTM(2 * hb, he, batch_first=True, bidirectional=True)
        self.mu = nn.Linear(2 * he, z)
        self.log_var = nn.Linear(2 * he, z)
        self.conductor_init = nn.Linear(z, 2 * hc)
        self.conductor = nn.LSTM(z, hc, batch_first=True)
        self.conductor_out = nn.Linear(hc, e)
        self.decoder_init = nn.Linear(e, 2 * hd)
        self.decoder = nn.LSTM(c + e, hd, batch_first=True)
        self.output = nn.Linear(hd, c)

    def one_hot(self, tokens):
        """One-hot of tokens; the class `classes` (the start) is all zeros."""
        c = self.cfg["classes"]
        return F.one_hot(tokens, c + 1)[..., :c].float()

    def encode(self, tokens):
        b = tokens.shape[0]
        bars, per_bar = self.cfg["bars"], self.cfg["steps_per_bar"]
        _, (h, _) = self.bar_encoder(self.one_hot(tokens.reshape(b * bars, per_bar)))
        summaries = torch.cat([h[0], h[1]], 1).reshape(b, bars, -1)  # [b, bars, 2·Hb]
        _, (h, _) = self.encoder(summaries)
        h = torch.cat([h[0], h[1]], 1)
        return self.mu(h), self.log_var(h)

    @staticmethod
    def initial_state(layer, x):
        h, c = torch.tanh(layer(x)).chunk(2, 1)
        return h[None].contiguous(), c[None].contiguous()

    def conduct(self, z):
        """Bar embeddings [b, bars, E]."""
        bars = self.cfg["bars"]
        hs, _ = self.conductor(z[:, None].expand(z.shape[0], bars, z.shape[1]), self.initial_state(self.conductor_init, z))
        return torch.tanh(self.conductor_out(hs))

    def decode_teacher_forced(self, z, tokens):
        b, steps = tokens.shape
        bars, per_bar, c = self.cfg["bars"], self.cfg["steps_per_bar"], self.cfg["classes"]
        e = self.conduct(z).reshape(b * bars, -1)
        start = torch.full((b, 1), c, dtype=tokens.dtype)
        previous = torch.cat([start, tokens[:, :-1]], 1).reshape(b * bars, per_bar)
        inputs = torch.cat([self.one_hot(previous), e[:, None].expand(b * bars, per_bar, e.shape[1])], 2)
        hs, _ = self.decoder(inputs, self.initial_state(self.decoder_init, e))
        return self.output(hs).reshape(b, steps, c)

    def forward(self, tokens, noise=None):
        mu, log_var = self.encode(tokens)
        z = mu if noise is None else mu + torch.exp(0.5 * log_var) * noise
        return self.decode_teacher_forced(z, tokens), mu, log_var

    def decode_argmax(self, z):
        bars, per_bar, c = self.cfg["bars"], self.cfg["steps_per_bar"], self.cfg["classes"]
        embeddings = self.conduct(z)
        previous = torch.zeros(z.shape[0], c)
        out = []
        for bar in range(bars):
            e = embeddings[:, bar]
            state = self.initial_state(self.decoder_init, e)
            previous = argmax_steps(self, state, previous, e, per_bar, out)
        return torch.stack(out, 1)

    def forward_flops(self, batch):
        """Matmul flops of encode + teacher-forced decode, one-hot inputs counted as dense."""
        cfg = self.cfg
        c, z, bars, per_bar = cfg["classes"], cfg["z_dim"], cfg["bars"], cfg["steps_per_bar"]
        hb, he = cfg["bar_encoder_hidden"], cfg["encoder_hidden"]
        encoder = 2 * lstm_flops(batch * bars, per_bar, c, hb) + 2 * lstm_flops(batch, bars, 2 * hb, he)
        return encoder + 2 * (2 * batch * 2 * he * z) + self.decode_flops(batch)

    def decode_flops(self, batch):
        """Matmul flops of the conductor and the bar decoder over all steps."""
        cfg = self.cfg
        c, z, bars, per_bar = cfg["classes"], cfg["z_dim"], cfg["bars"], cfg["steps_per_bar"]
        hc, e, hd = cfg["conductor_hidden"], cfg["bar_embedding"], cfg["decoder_hidden"]
        conductor = 2 * batch * z * 2 * hc + lstm_flops(batch, bars, z, hc) + 2 * batch * bars * hc * e
        rows = batch * bars
        decoder = 2 * rows * e * 2 * hd + lstm_flops(rows, per_bar, c + e, hd) + 2 * rows * per_bar * hd * c
        return conductor + decoder


def batch_loss(model, tokens, noise, beta, free_bits):
    """Summed cross-entropy over the steps + β·max(KL, λ), both averaged over the batch."""
    logits, mu, log_var = model(tokens, noise)
    b, steps, classes = logits.shape
    reconstruction = F.cross_entropy(logits.reshape(b * steps, classes), tokens.reshape(-1)) * steps
    kl = (0.5 * (mu * mu + log_var.exp() - log_var) - 0.5).sum(1).mean()
    return reconstruction + beta * kl.clamp(min=free_bits)


def argmax_steps(model, state, previous, context, steps, out):
    """`steps` autoregressive steps of `model.decoder` from `state`, each fed the previous step's
    one-hot choice (`previous` first) and `context`; appends each step's argmax [b] to `out` and
    returns the last choice, one-hot."""
    for _ in range(steps):
        h, state = model.decoder(torch.cat([previous, context], 1)[:, None], state)
        chosen = model.output(h[:, 0]).argmax(-1)
        out.append(chosen)
        previous = model.one_hot(chosen)
    return previous


def lstm_flops(batch, steps, inputs, hidden):
    """One matmul of [x_t, h] with the four stacked gates per step."""
    return 2 * batch * steps * (inputs + hidden) * 4 * hidden


def main():
    cfg, model, io, iterations = load_twin(lambda cfg: HierVae(cfg) if "bars" in cfg else MusicVae(cfg))
    tokens, noise, z8 = io["tokens"], io["noise"], io["z8"]
    beta, free_bits = io["beta"].item(), io["free_bits"].item()
    model.eval()
    with torch.no_grad():
        mu, _ = model.encode(tokens)
        logits = model.decode_teacher_forced(mu, tokens)
        decoded = model.decode_argmax(z8)
        loss = batch_loss(model, tokens, noise, beta, free_bits).item()
    mu_diff = (mu - io["mu"]).abs().max().item()
    logit_diff = (logits - io["logits"]).abs().max().item()
    same_tokens = (decoded == io["decoded8"]).sum().item()

    def forward():
        with torch.no_grad():
            mu, _ = model.encode(tokens)
            model.decode_teacher_forced(mu, tokens)

    def decode():
        with torch.no_grad():
            model.decode_argmax(z8)

    forward_ms = median_ms(forward, iterations)
    decode_ms = median_ms(decode, 5 * iterations)
    step_ms, loss_after = time_training_step(
        model, lambda: batch_loss(model, tokens, noise, beta, free_bits), iterations, io["lr"].item(),
        io["weight_decay"].item())
    batch = tokens.shape[0]
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "forward_flops": model.forward_flops(batch),
        "decode_flops": model.decode_flops(z8.shape[0]),
        "forward_ms": forward_ms,
        "train_step_ms": step_ms,
        "decode_ms": decode_ms,
        "max_abs_diff_mu": mu_diff,
        "max_abs_diff_logits": logit_diff,
        "loss": loss,
        "loss_after_steps": loss_after,
        "same_tokens": same_tokens,
        "tokens": decoded.numel(),
    }))


if __name__ == "__main__":
    main()
