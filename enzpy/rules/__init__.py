"""Differentiation rules. Importing the package registers every scalar rule.

`registry` holds the machinery (`@partials`, `scalar_rule`, `missing_rule_error`);
`arithmetic`, `math` and `special` state the partials, one function per operation;
`blas` and `lapack` register the rules of calls with memory effects (`calls.memory_call_rule`);
`lists` the allocators and reallocation of numba's resizable buffers (reflected lists);
`heap` C's malloc / calloc / free and C++'s new / delete.
"""

from . import arithmetic, blas, cuda, heap, lapack, lists, math, mpi, special, typed_lists  # noqa: F401  (registers the rules)
from .registry import (ScalarRule, choices, missing_rule_error, partials, registered_rules, rule_key,  # noqa: F401
                       scalar_rule)
