"""Keras 3 layers of the YouTube-8M models: backend-agnostic (`keras.ops` only), one per file.

Frame-level layers take `(batch, frames, features)` inputs with a `(batch, frames)` mask (True for
real frames); padded frames never change their outputs.
"""

from .attention_pooling import AttentionPooling
from .context_gating import ContextGating
from .dequantize import Dequantize
from .masked_pooling import MaskedPooling
from .masking import masked_mean, masked_softmax
from .member_mixture import MemberMixture
from .mixture_of_experts import MixtureOfExperts
from .netfv import NetFV
from .netvlad import NetVLAD
from .nextvlad import NeXtVLAD
from .shifting_attention import ShiftingAttention
from .soft_assignment import SoftAssignment
from .soft_dbof import SoftDBoF
from .temporal_block import TemporalBlock
from .temporal_xception import TemporalXception

__all__ = ["AttentionPooling", "ContextGating", "Dequantize", "MaskedPooling", "MemberMixture",
           "MixtureOfExperts", "NetFV", "NetVLAD", "NeXtVLAD", "ShiftingAttention",
           "SoftAssignment",
           "SoftDBoF", "TemporalBlock", "TemporalXception", "masked_mean", "masked_softmax"]
