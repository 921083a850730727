"""Pooling heads: a feature map ``(B, C, H, W)`` to one global descriptor.

Four poolings, chosen by name: ``gem`` (generalised mean, learnable exponent p;
Radenović et al. 2018), ``spoc`` (average; Babenko & Lempitsky 2015), ``mac`` (max;
Tolias et al. 2016) and ``cls``: the backbone's own pooled vector (a ViT's class token, a
CLIP tower's image embedding; ``Backbone.forward_pooled``), which is what such models are
trained to compare. On a ViT the first three pool its patch tokens laid on their grid. ``create_pooling`` also builds the combined global descriptor of
Jun et al. 2019 ("CGD"): ``"gem+mac+spoc"`` runs each pooling, projects each to its share of
the output width, L2-normalises each, concatenates and L2-normalises the whole. A single
name is the same construction with one branch, so there is one code path for both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from street2shop.registry import Registry


class GeM(nn.Module):
    """Generalised-mean pooling ``(mean x^p)^(1/p)``; p=1 is SPoC, p -> inf is MAC."""

    def __init__(self, p: float = 3.0, learnable: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent must be positive, got {p}")
        p_tensor = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(min=self.eps)
        # Factor out the per-channel max so that x^p cannot overflow for large p (a learnt p
        # can drift upwards): (mean x^p)^(1/p) = m * (mean (x/m)^p)^(1/p) with x/m in (0, 1].
        peak = x.amax(dim=(-2, -1), keepdim=True)
        pooled = (x / peak).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)
        return pooled * peak.flatten(-3)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3g}, learnable={isinstance(self.p, nn.Parameter)}"


class SPoC(nn.Module):
    """Sum (average) pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class MAC(nn.Module):
    """Max pooling over space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1))


class CLS(nn.Module):
    """The backbone's own pooled vector, as it is: it reads ``forward_pooled``'s second
    output, not the feature map (a ViT's class token after its final norm, a CLIP tower's
    projected image embedding, a timm CNN's global average)."""

    #: which output of ``Backbone.forward_pooled`` the pooling reads
    reads = "global"

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled


POOLS: Registry[type[nn.Module]] = Registry("pooling", {"gem": GeM, "spoc": SPoC, "mac": MAC, "cls": CLS})


def reads_global(pool: nn.Module) -> bool:
    """Whether ``pool`` reads the backbone's pooled vector rather than its feature map."""
    return getattr(pool, "reads", "map") == "global"


def pool_input(pool: nn.Module, fmap: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
    """What ``pool`` is applied to: the feature map, or the backbone's pooled vector."""
    if not reads_global(pool):
        return fmap
    if pooled is None:
        raise ValueError("pooling 'cls' needs the backbone's pooled vector (Backbone.forward_pooled)")
    return pooled


def create_pool(name: str, **kwargs) -> nn.Module:
    """One parameter-light pooling module ``(B, C, H, W) -> (B, C)`` by name."""
    return POOLS.get(name)(**kwargs)


def parse_pooling(name: str) -> list[str]:
    """``"gem+spoc"`` -> ``["gem", "spoc"]``, checking each part and refusing repeats."""
    parts = [part.strip() for part in name.lower().split("+")]
    unknown = [part for part in parts if part not in POOLS]
    if unknown or not parts:
        raise ValueError(
            f"unknown pooling {unknown or name!r} in {name!r}; use {POOLS.names()} joined by '+'"
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"pooling {name!r} repeats a branch")
    return parts


class GlobalDescriptor(nn.Module):
    """Pool with one or more branches, project each, L2-normalise, concatenate.

    With ``out_dim=None`` nothing is learnt: the branches are concatenated as they are (the
    "pretrained features" baseline), so the width is ``len(branches) * in_dim``.
    The output of a single branch is *not* normalised here; the embedder normalises last.
    ``global_dim``: the width of the backbone's pooled vector, which the ``cls`` branch reads
    (``in_dim`` is the feature map's); None: the backbone has none, and ``cls`` is refused.
    """

    def __init__(
        self,
        pools: list[str],
        in_dim: int,
        out_dim: int | None,
        gem_p: float = 3.0,
        learnable_p: bool = True,
        global_dim: int | None = None,
    ) -> None:
        super().__init__()
        if out_dim is not None and out_dim < len(pools):
            raise ValueError(f"out_dim={out_dim} cannot be shared among {len(pools)} branches")
        self.names = list(pools)
        self.pools = nn.ModuleList(
            create_pool(n, p=gem_p, learnable=learnable_p) if n == "gem" else create_pool(n)
            for n in pools
        )
        if any(reads_global(pool) for pool in self.pools) and global_dim is None:
            raise ValueError("pooling 'cls' needs a backbone with a pooled vector of its own (a timm or open_clip model)")
        widths = [global_dim if reads_global(pool) else in_dim for pool in self.pools]
        if out_dim is None:
            self.projections = None
            self.out_dim = sum(widths)
        else:
            # Each branch gets an equal share; the first absorbs the remainder.
            shares = [out_dim // len(pools)] * len(pools)
            shares[0] += out_dim - sum(shares)
            self.projections = nn.ModuleList(nn.Linear(w, share) for w, share in zip(widths, shares, strict=True))
            self.out_dim = out_dim
        self.in_dim = in_dim
        self.global_dim = global_dim
        #: whether a branch reads the backbone's pooled vector (else the map alone is needed)
        self.reads_global = any(reads_global(pool) for pool in self.pools)

    def forward(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: the feature map ``(B, C, H, W)``; ``pooled``: the backbone's pooled vector."""
        branches = [pool(pool_input(pool, x, pooled)) for pool in self.pools]
        if self.projections is not None:
            branches = [proj(b) for proj, b in zip(self.projections, branches, strict=True)]
        if len(branches) == 1:
            return branches[0]
        return F.normalize(torch.cat([F.normalize(b, dim=-1) for b in branches], dim=-1), dim=-1)


class ResidualDescriptor(nn.Module):
    """The pretrained descriptor, refined: ``v = normalise(pool(x))``, ``out = v + W v + b``.

    The pooling is parameter-free (GeM with p fixed at 3, SPoC, MAC, or a ``+``-joined
    combination), exactly the "pretrained features" baseline's; ``W`` and ``b`` start at zero,
    so an untrained head *is* that baseline, and weight decay pulls a trained one back
    towards it. On a frozen backbone this head trains on cached descriptors alone
    (:mod:`street2shop.models.head_training`), and :meth:`refine` applies it to descriptors
    computed once, so the trained model and the untrained baseline share one backbone pass.
    """

    def __init__(self, pools: list[str], in_dim: int, gem_p: float = 3.0, global_dim: int | None = None) -> None:
        super().__init__()
        self.base = GlobalDescriptor(pools, in_dim, None, gem_p=gem_p, learnable_p=False, global_dim=global_dim)
        self.names, self.pools, self.projections = self.base.names, self.base.pools, None
        self.reads_global = self.base.reads_global
        self.out_dim = self.base.out_dim
        self.in_dim = in_dim
        self.refine_layer = nn.Linear(self.out_dim, self.out_dim)
        nn.init.zeros_(self.refine_layer.weight)
        nn.init.zeros_(self.refine_layer.bias)

    def descriptor(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """The unit-norm pretrained descriptor of a feature map (and the backbone's pooled vector)."""
        return F.normalize(self.base(x, pooled), dim=-1)

    def refine(self, descriptors: torch.Tensor) -> torch.Tensor:
        """The head on unit-norm descriptors (not normalised: the embedder normalises last)."""
        return descriptors + self.refine_layer(descriptors)

    def forward(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        return self.refine(self.descriptor(x, pooled))


def create_pooling(
    name: str, in_dim: int, out_dim: int | None, gem_p: float = 3.0, learnable_p: bool = True,
    global_dim: int | None = None,
) -> GlobalDescriptor:
    """The head for ``name`` (``"gem"``, ``"spoc"``, ``"mac"``, ``"cls"`` or a ``+``-joined
    combination); ``global_dim``: the width of the backbone's pooled vector (for ``cls``)."""
    return GlobalDescriptor(parse_pooling(name), in_dim, out_dim, gem_p=gem_p, learnable_p=learnable_p, global_dim=global_dim)
