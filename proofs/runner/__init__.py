"""The plumbing of ``python -m proofs.check``: finding the obligations
(:mod:`.discovery`), running them in worker processes with a time limit each
(:mod:`.pool`), and reporting their verdicts (:mod:`.report`)."""
