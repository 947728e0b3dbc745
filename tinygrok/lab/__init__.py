"""Many runs: the run recipe and its stages (recipes), the paper's grids as data and what they cost (grids), sweeps
of a grid on any executor, local processes or Dask (sweep), a finished run's record (records), the report of a
sweep against the paper (sweep_report), the one-machine reproduction's plan (reproduction) and its results page
(results_page), the grok forecaster's refit and score (forecast_scoring), the cost of a step (benchmark), and the
lessons' helpers (lessons)."""
