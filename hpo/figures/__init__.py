"""Figure building blocks: learning curves as SVG, a trial's curves for optuna-dashboard, the
HTML page around figures and tables, and round axis ticks. No database, no torch."""
