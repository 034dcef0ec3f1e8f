"""Packed trials: K runs with one pack signature trained as one batched model (HFTA style)."""

from anpyc_core.packing.signature import MEMBER_FIELDS, group_by_signature, pack_refusal, pack_signature
from anpyc_core.packing.trainer import PackedTrainer, run_pack

__all__ = ["MEMBER_FIELDS", "PackedTrainer", "group_by_signature", "pack_refusal", "pack_signature", "run_pack"]
