"""Training of the project's own models (data pipeline in :mod:`training.data`)."""
