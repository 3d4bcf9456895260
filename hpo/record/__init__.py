"""What a study and its trials store, typed: the layer every other `hpo` package builds on.

The study's settings (`config`), its search space, the record of a trial's results
(`trial_record`), a retry's lineage, the name of a trial's live figure and the one-line summary of
a trial. Nothing here imports the trial, study, results or cli layers (import-linter's contract in
pyproject.toml), nor torch: the study layer reads a record before any training is set up.
"""
