"""Decisions: probabilities to label sets; threshold objectives and rules, calibration, and refitting them (`tagnet calibrate`)."""
