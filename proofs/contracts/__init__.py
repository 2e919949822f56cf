"""The model helpers' PEP 316 contracts, checked by CrossHair."""
