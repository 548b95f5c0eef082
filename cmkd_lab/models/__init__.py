"""Models: :class:`ModelSpec` (what to build) and :func:`build_model`, in :mod:`.specs`; the layers
(:class:`Dense`, :class:`ResidualBlock`, :class:`Net`…) in :mod:`.layers`."""

from .layers import Dense, GlobalAvgPool, Net, ResidualBlock
from .specs import DOWNSAMPLING, MODEL_KINDS, ModelSpec, build_model, seeded

__all__ = [
    "ModelSpec",
    "MODEL_KINDS",
    "DOWNSAMPLING",
    "build_model",
    "seeded",
    "Dense",
    "GlobalAvgPool",
    "ResidualBlock",
    "Net",
]
