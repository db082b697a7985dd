"""Pod-building blocks shared by every kind: GPU scheduling, pod security, model storage. Pure functions."""
