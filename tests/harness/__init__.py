"""The real-process harness: what the tests use to run `hpo` as a cluster would. preloaded.py
forks `hpo` processes from one that has imported torch; freeze_at.py and cut_at.py stop or cut
off a worker at a chosen statement; relay.py and netns.py put a network between a worker and its
database; pooled_postgres.py and slurm.py start a PgBouncer and a private Slurm cluster;
browser.py and figure_probe.js read figures as Chromium draws them."""
