"""`hpo confirm`, one feature: the companion study that retrains the top configurations on new
seeds (companion.py), and the statistics that say whether the winner stays ahead
(statistics.py)."""
