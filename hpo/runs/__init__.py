"""Training runs outside a study: retraining a trial's configuration (`hpo train`) and the seed's
six stages (`hpo reproduce`). The only results that import torch."""
