"""tinygrok: a from-scratch NumPy + autograd transformer that groks modular arithmetic, and the geometry of why
(arXiv 2602.16746, reproduced; PAPER.md is the spec).

Read it in this order: config.py (every setting) -> data.py (the task and its split) -> model.py (the transformer,
one formula a line) -> optim.py (AdamW and clipping) -> commutator.py (the defect and the Lie bracket) -> pca.py
(the execution subspace) -> analysis.py (grok steps, onset, lead) -> train.py (one run) -> the lessons.
The command line is tinygrok/cli (`tinygrok` or `python -m tinygrok`).
"""
