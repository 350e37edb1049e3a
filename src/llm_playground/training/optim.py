"""Optimisers of the Training ground: AdamW, and Muon for the hidden matrices.

:func:`build_optimizer` returns what a :class:`~llm_playground.training.config.TrainConfig`
asks for. With ``optimizer="adamw"`` it is PyTorch's AdamW (matrices and embeddings decay,
biases and norm gains do not). With ``optimizer="muon"`` it is :class:`Muon`: one
optimiser with two kinds of parameter groups,

- ``"muon"``: the 2-D weight matrices inside the transformer blocks. Their gradient is
  smoothed with Nesterov momentum, then *orthogonalised* by a Newton-Schulz iteration
  (:func:`newton_schulz`): the update keeps the directions of the gradient but sets all
  its singular values near 1, so rare directions learn as fast as common ones;
- ``"adamw"``: everything else (token embedding, output head, norm gains, biases), which
  Muon is not meant for, on a plain AdamW written out step by step.

PyTorch ships ``torch.optim.Muon``, but it runs the Newton-Schulz iteration in bfloat16,
which CPUs without native bf16 run a hundred times slower than fp32; here the iteration
runs in the precision the run hands in: float32, or bfloat16 where timing this iteration on
the run's own matrix shapes found it faster (:mod:`llm_playground.training.precision`).
Every group keeps its starting learning rate as ``initial_lr``, so one schedule factor
(:meth:`TrainConfig.lr_factor`) drives both kinds.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

#: Quintic Newton-Schulz coefficients (a, b, c) of the Muon reference implementation.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def newton_schulz(
    matrices: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """An approximately orthogonal matrix with the singular vectors of each input matrix.

    ``matrices`` is one matrix (rows, cols) or a stack (n, rows, cols). The iteration maps
    every singular value s to a*s + b*s³ + c*s⁵ and repeats; after scaling the input to a
    Frobenius norm of 1 (so that every s is at most 1), five rounds bring them all to
    roughly 0.7-1.2: close enough to 1 for an update direction, and cheap.
    """
    a, b, c = NS_COEFFICIENTS
    x = matrices.to(dtype)
    # work on the wide orientation: X @ X^T is then the smaller square
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    # scale so that the largest singular value is at most 1
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT  # X X^T
        polynomial = b * gram + c * gram @ gram  # b (X X^T) + c (X X^T)^2
        x = a * x + polynomial @ x  # a X + b X^3 + c X^5 in singular values
    if tall:
        x = x.mT
    return x.to(matrices.dtype)


def newton_schulz_reference(G: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """Muon's orthogonalisation of one gradient matrix G (rows, cols), as the paper writes it.

    Equal to newton_schulz() (tested), which runs a whole stack of same-shaped
    matrices as one batch and in the precision measured fastest on this machine.
    """
    a, b, c = NS_COEFFICIENTS
    X = G.float()
    # work on the wide orientation, so that X Xᵀ is the smaller square
    transposed = X.size(0) > X.size(1)
    if transposed:
        X = X.T  # (rows, cols) -> (cols, rows)
    # scale to a Frobenius norm of 1, which puts every singular value at most 1
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T  # (r, c) @ (c, r) -> (r, r)
        # each singular value s becomes a·s + b·s³ + c·s⁵: small ones grow quickly towards 1
        X = a * X + (b * A + c * A @ A) @ X  # (r, r) @ (r, c) -> (r, c)
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """Muon for hidden matrices and AdamW for the rest, as one optimiser (see the module doc)."""

    def __init__(self, groups: list[dict], ns_dtype: torch.dtype = torch.float32):
        defaults = dict(
            lr=0.02, momentum=0.95, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0, kind="adamw"
        )
        super().__init__(groups, defaults)
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])
            if group["kind"] == "muon" and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon takes 2-D weight matrices only")
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon_step(group)
            else:
                self._adamw_step(group)

    def _muon_step(self, group: dict) -> None:
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        updates = []
        for p in params:
            # 1. momentum: an average of past gradients, then a Nesterov look-ahead
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buffer = state["momentum_buffer"]
            buffer.lerp_(p.grad, 1 - momentum)
            updates.append(p.grad.lerp(buffer, momentum))
        # 2. orthogonalise, all matrices of one shape in one batched iteration
        by_shape: dict[tuple, list[int]] = {}
        for index, update in enumerate(updates):
            by_shape.setdefault(tuple(update.shape), []).append(index)
        for indices in by_shape.values():
            stacked = torch.stack([updates[i] for i in indices])
            orthogonal = newton_schulz(stacked, dtype=self.ns_dtype)
            for slot, i in enumerate(indices):
                updates[i] = orthogonal[slot]
        for p, update in zip(params, updates, strict=True):
            # 3. decoupled weight decay, then a step scaled up for tall matrices
            if decay:
                p.mul_(1 - lr * decay)
            rows, cols = p.shape
            p.add_(update, alpha=-lr * max(1.0, rows / cols) ** 0.5)

    def _adamw_step(self, group: dict) -> None:
        lr, (beta1, beta2), eps, decay = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = torch.zeros(())
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            # 1. decoupled weight decay
            if decay:
                p.mul_(1 - lr * decay)
            # 2. running averages of the gradient and of its square
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            # 3. step along the bias-corrected average, scaled per coordinate
            denominator = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(eps)
            p.addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**t))


def muon_parameter_groups(model: nn.Module, config) -> list[dict]:
    """Hidden 2-D matrices for Muon; embeddings, head, gains and biases for AdamW."""
    model = getattr(model, "module", model)
    hidden, embeddings_and_head, gains_and_biases = [], [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.dim() == 2 and name.startswith("h."):
            hidden.append(p)
        elif p.dim() >= 2:
            embeddings_and_head.append(p)
        else:
            gains_and_biases.append(p)
    betas = (config.beta1, config.beta2)
    groups = [
        dict(
            params=hidden,
            kind="muon",
            lr=config.muon_lr,
            momentum=config.muon_momentum,
            weight_decay=0.0,
        ),
        dict(
            params=embeddings_and_head,
            kind="adamw",
            lr=config.lr,
            betas=betas,
            weight_decay=config.weight_decay,
        ),
        dict(params=gains_and_biases, kind="adamw", lr=config.lr, betas=betas, weight_decay=0.0),
    ]
    return [g for g in groups if g["params"]]


def configure_optimizers(
    model: nn.Module,
    weight_decay: float,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.99),
    device_type: str = "cpu",
    fused: bool = True,
) -> torch.optim.AdamW:
    """AdamW where matrices and embeddings decay and biases and LayerNorm gains do not.

    ``fused`` uses the single-kernel AdamW when this PyTorch build offers it for the device.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    kwargs = {}
    if (
        fused
        and "fused" in inspect.signature(torch.optim.AdamW).parameters
        and device_type in ("cpu", "cuda")
    ):
        kwargs["fused"] = True
    try:
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)
    except (RuntimeError, ValueError):  # fused not available for this device or dtype
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def build_optimizer(
    model: nn.Module, config, device_type: str = "cpu", ns_dtype: torch.dtype = torch.float32
) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` names, set up for ``model``; ``ns_dtype`` is the
    precision of Muon's Newton-Schulz iteration (decided by the run, see training.precision)."""
    if config.optimizer == "muon":
        return Muon(muon_parameter_groups(model, config), ns_dtype=ns_dtype)
    return configure_optimizers(
        model,
        config.weight_decay,
        config.lr,
        (config.beta1, config.beta2),
        device_type,
        fused=config.fused_adamw,
    )


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group at ``factor`` times its starting learning rate (the schedule's value)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
