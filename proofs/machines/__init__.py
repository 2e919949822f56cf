"""The refinement state machines, one per manager (the same name as its
obligation module in proofs/): hypothesis drives the model and every step is
checked against the spec's transition and invariants on the abstraction of the
model's state (proofs/abstractions/). ``runner`` holds what every machine shares."""
