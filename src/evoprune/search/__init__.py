"""Search over binary chromosomes; sees only a function from chromosomes to fitness."""

from .ga import EvaluationRecord, GAResult, SteadyStateGA
from .operators import (INIT_CHOICES, init_population, mutate, nam_select, parse_init,
                        replace_worst, uniform_crossover)

__all__ = ["EvaluationRecord", "GAResult", "SteadyStateGA", "INIT_CHOICES", "init_population",
           "mutate", "nam_select", "parse_init", "replace_worst", "uniform_crossover"]
