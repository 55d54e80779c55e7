"""Training the shipped demo model: corpus generation, the training script and the evaluation cases.

Not installed with the package: run from a checkout (`python -m training.train`).
"""
