"""evoprune: evolve which neurons or input features of a transfer-learning head to keep."""

__version__ = "0.1.0"
