"""Many runs: the run recipe and its stages (recipes), the paper's grids as data and what they cost (grids), sweeps
of a grid on any executor, local processes or Dask (sweep), the report against the paper (report), the cost of a
step (bench), and the lessons' helpers (lessons)."""
