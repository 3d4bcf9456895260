"""The exactly-once work queue in the study database.

A study is a queue of WAITING trials made at creation; a worker takes one at a time, and the
database hands each to exactly one worker (pop.py: one pop, one path per dialect family, the
bulk enqueue and the queue's index). A worker reads its study through a trial cache that reads
past the queue and keeps the ranking (cache.py); it writes its trial's attributes in one commit,
refused once another worker has taken the trial over (trial_writes.py); and it asks the database
for counts, retries and the trials whose worker is gone (queries.py). Optuna's private names are
used in optuna_private.py only.
"""
