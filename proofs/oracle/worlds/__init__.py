"""The model world's parts, one per family of managers (PROTOCOL.md): the
kernel's, DOS memory, processes, and shared memory with mapped files.
:class:`proofs.oracle.world.ModelWorld` composes them. Nothing here imports z3:
the model shim starts once per sequence."""
