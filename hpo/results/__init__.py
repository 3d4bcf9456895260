"""What a study gives back: status, export, report, retraining, figures and text."""
