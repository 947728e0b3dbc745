"""The science a student reads: every setting (config), the task and its split (data), the readable transformer
(model, one formula a line), AdamW and clipping (optim), the commutator defect and the Lie bracket (commutator),
trajectory PCA and the execution basis (pca), the interventions' formulas (interventions), grok steps, onset, lead
and the power law (analysis, undefined), and the paper's numbers as data (paper).

Pure functions over arrays: nothing here knows about processes, devices or files. A probe takes the gradients it
needs as a function (commutator.Derivatives); how they are computed fast is the engine's business.
"""
