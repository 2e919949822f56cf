"""The abstraction functions: a model object as the concrete spec state that
the invariants and transitions of spec/ are evaluated on."""
