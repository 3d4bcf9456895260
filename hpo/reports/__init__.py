"""What a study gives back, read-only: its status, the export, the trials table, the HTML report
and studies side by side."""
