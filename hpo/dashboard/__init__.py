"""optuna-dashboard on a study's storage: the server (loopback by default, a token) and its
read-only access rule."""
