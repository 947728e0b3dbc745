"""The reference to beat: the paper's model built the way its PyTorch code builds it (docs/paper.md §2-3).

Stock nn.TransformerEncoderLayer (pre-norm, GELU, d_ff 256, batch_first, dropout 0), learned positions, final
LayerNorm, a linear head read at position 0, torch.optim.AdamW with the same settings, clipping to 1.0, float32.
PyTorch is a benchmark-only dependency: `pip install torch==2.13.0`.
"""

from __future__ import annotations

import torch
from torch import nn


class ModOpTransformer(nn.Module):
    def __init__(self, p: int = 97, d_model: int = 128, n_heads: int = 4, d_ff: int = 256, n_layers: int = 2):
        super().__init__()
        self.tok_emb = nn.Embedding(p, d_model)
        self.pos_emb = nn.Parameter(torch.randn(2, d_model) / d_model**0.5)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, 2) -> (N, p)
        h = self.encoder(self.tok_emb(tokens) + self.pos_emb)
        return self.head(self.ln(h[:, 0]))


def make(cfg, device: str = "cpu"):
    """Model (on `device`), optimizer and loss for a tinygrok Config (only the architecture and optimizer fields
    are used)."""
    model = ModOpTransformer(cfg.p, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    return model, opt, nn.CrossEntropyLoss()


def train_step(model, opt, loss_fn, x, y, clip: float = 1.0) -> None:
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()


@torch.no_grad()
def evaluate(model, x, y) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def commutator_sample(model, loss_fn, batch_a, batch_b, eta: float = 1e-3) -> float:
    """The defect of docs/paper.md §6.1 as the reference computes it: four gradients, parameters restored after."""
    params = [p for p in model.parameters()]
    theta = [p.detach().clone() for p in params]

    def grads(batch):
        model.zero_grad(set_to_none=True)
        loss_fn(model(batch[0]), batch[1]).backward()
        return [p.grad.detach().clone() for p in params]

    def step_from(start, g):
        with torch.no_grad():
            for p, s, gi in zip(params, start, g):
                p.copy_(s - eta * gi)

    g_a, g_b = grads(batch_a), grads(batch_b)
    ends = []
    for g_first, second in ((g_a, batch_b), (g_b, batch_a)):
        step_from(theta, g_first)
        mid = [p.detach().clone() for p in params]
        g_second = grads(second)
        step_from(mid, g_second)
        ends.append(torch.cat([p.detach().flatten() for p in params]))
    step_from(theta, [torch.zeros_like(t) for t in theta])  # restore theta
    norm = lambda g: eta * torch.sqrt(sum((gi**2).sum() for gi in g))  # noqa: E731
    return (torch.linalg.norm(ends[0] - ends[1]) / (norm(g_a) * norm(g_b) + 1e-12)).item()
