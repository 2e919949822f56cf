"""Mutation testing of model/: how many small, real behaviour changes of the
reference model the test suite and the quick check profile catch.

``python -m proofs.mutation`` samples mutants per module with a seed
(:mod:`proofs.mutation.operators`), runs for each the tests that execute the
mutated line (:mod:`proofs.mutation.selection`) and the quick profile of
``python -m proofs.check`` in a private copy of the tree
(:mod:`proofs.mutation.execute`), and reports killed / survived / equivalent /
timeout per killer (:mod:`proofs.mutation.report`).

Why a driver of our own and not mutmut or cosmic-ray: both only know a test
command, and the question asked here (issue 18) is which of two gates catches a
mutant, the tests or the quick profile, each alone; mutmut 3 also runs the
tests against a trampolined copy of the sources that ``python -m proofs.check``
(a separate process that imports model/) never sees. The pieces they would
give us are small; the heavy parts (test selection by line coverage,
timeouts) are coverage.py's and the standard library's.
"""
