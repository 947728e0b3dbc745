"""tinygrok: a from-scratch NumPy + autograd transformer that groks modular arithmetic, and the geometry of why
(arXiv 2602.16746, reproduced; docs/paper.md summarises the paper and its reference code).

The package is five layers, each importing only those below it (pyproject.toml's import-linter contract):

    cli       the typer commands (app.py) and their rich views (views.py)
    lab       many runs: recipes, the paper's grids, sweeps, records, reports, the reproduction, the lessons
    run       one run on disk: its directory, the training loop, its geometry and figures
    engine    what makes the science fast, tested equal to it: kernels, primitives, worker processes, backends
    science   what a student reads: pure functions over arrays, nothing of processes, devices or files

Read it in this order: science/config.py (every setting) -> science/data.py (the task and its split) ->
science/model.py (the transformer, one formula a line) -> science/optim.py (AdamW and clipping) ->
science/commutator.py (the defect and the Lie bracket) -> science/pca.py (the execution subspace) ->
science/interventions.py (what may change a step) -> science/analysis.py (grok steps, onset, lead) ->
run/train.py (one run) -> the lessons. The command line is `tinygrok`, or `python -m tinygrok`.
"""
