"""Errors of the trainer that callers act on (kept apart so strategies and the trainer share them without a circle)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""
