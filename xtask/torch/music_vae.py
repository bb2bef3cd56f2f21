"""The flat 2-bar MusicVAE of engine/src/models/music_vae.rs in PyTorch, for `cargo xtask bench
latent --compare-torch`: loads our config.json and model.safetensors (same parameter names:
the LSTMs are `nn.LSTM`s, whose names, gate order (i, f, g, o) and two biases
engine/src/nn/lstm.rs keeps), runs the token windows the Rust bench wrote, checks the encoder's μ
and the teacher-forced decoder logits (z = μ) against candle's, and times encode + decode at the
training batch, one AdamW training step (reconstruction cross-entropy + β·max(KL, λ), as
`batch_loss` in engine/src/train/vae.rs) on the same batch, and the argmax decoding of 8 latents
(16 bars, what the plugin does after sampling), whose tokens must equal candle's. Prints one
JSON object.

usage: music_vae.py MODEL_DIR IO.safetensors ITERATIONS

IO.safetensors holds `tokens` [batch, steps] (i64), `noise` [batch, z_dim] (the training step's
reparameterization noise), `mu` and `logits` (candle's μ and teacher-forced logits with z = μ),
`z8` [8, z_dim] and `decoded8` [8, steps] (i64; candle's argmax decoding of z8), `loss` [1]
(candle's loss of the batch before any update) and `lr`, `weight_decay`, `beta`, `free_bits`
[1] (the training defaults). The argmax decoding runs 5 × ITERATIONS times, the rest ITERATIONS times; each time
is the median after one warm-up run.
"""

import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from twin_common import load_twin, median_ms


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
        state = self.initial_state(z)
        previous = torch.zeros(z.shape[0], self.cfg["classes"])
        out = []
        for _ in range(self.cfg["steps"]):
            h, state = self.decoder(torch.cat([previous, z], 1)[:, None], state)
            chosen = self.output(h[:, 0]).argmax(-1)
            out.append(chosen)
            previous = self.one_hot(chosen)
        return torch.stack(out, 1)


def batch_loss(model, tokens, noise, beta, free_bits):
    """Summed cross-entropy over the steps + β·max(KL, λ), both averaged over the batch."""
    logits, mu, log_var = model(tokens, noise)
    b, steps, classes = logits.shape
    reconstruction = F.cross_entropy(logits.reshape(b * steps, classes), tokens.reshape(-1)) * steps
    kl = (0.5 * (mu * mu + log_var.exp() - log_var) - 0.5).sum(1).mean()
    return reconstruction + beta * kl.clamp(min=free_bits)


def lstm_flops(batch, steps, inputs, hidden):
    """One matmul of [x_t, h] with the four stacked gates per step."""
    return 2 * batch * steps * (inputs + hidden) * 4 * hidden


def forward_flops(cfg, batch):
    """Matmul flops (2·m·n·k) of encode + teacher-forced decode; one-hot inputs count as dense,
    as PyTorch multiplies them (candle looks their rows up, so its GFLOP/s are effective)."""
    c, z, steps, he = cfg["classes"], cfg["z_dim"], cfg["steps"], cfg["encoder_hidden"]
    encoder = 2 * lstm_flops(batch, steps, c, he) + 2 * (2 * batch * 2 * he * z)
    return encoder + decode_flops(cfg, batch)


def decode_flops(cfg, batch):
    """Matmul flops of the decoder over all steps (teacher-forced or autoregressive)."""
    c, z, steps, hd = cfg["classes"], cfg["z_dim"], cfg["steps"], cfg["decoder_hidden"]
    return 2 * batch * z * 2 * hd + lstm_flops(batch, steps, c + z, hd) + 2 * batch * steps * hd * c


def main():
    cfg, model, io, iterations = load_twin(MusicVae)
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
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=io["lr"].item(), weight_decay=io["weight_decay"].item())

    def step():
        opt.zero_grad()
        batch_loss(model, tokens, noise, beta, free_bits).backward()
        opt.step()

    step_ms = median_ms(step, iterations)
    with torch.no_grad():
        loss_after = batch_loss(model, tokens, noise, beta, free_bits).item()  # after ITERATIONS + 1 steps
    batch = tokens.shape[0]
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "forward_flops": forward_flops(cfg, batch),
        "decode_flops": decode_flops(cfg, z8.shape[0]),
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
