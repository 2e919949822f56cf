"""Self-contained HTML reports, rendered from the JSON reports (one source of truth).

:mod:`proofs.html.check_report` renders ``python -m proofs.check --json``'s
report, :mod:`proofs.html.oracle_report` the oracle's (``python -m
proofs.oracle --json``); ``python -m proofs.report FILE.json --html OUT``
(``memspec report``) renders an old one. The file needs no network and no
server: its CSS, its few lines of JavaScript (sorting and filtering) and its
drawings (SVG written here: :mod:`proofs.html.svg`, :mod:`proofs.html.memory`)
are inline, and every text taken from a report is escaped.
"""
