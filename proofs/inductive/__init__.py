"""How the inductive obligations are generated and decided: Inv(s) and
Step(s, s') imply Inv(s'), one per operation x invariant (``paging`` for the
physical and virtual memory state, ``layered`` for the managers with a state of
their own), and the search for reachable counterexamples when z3 cannot decide."""
