"""The shipped demo model: corpus, knowledge base, training script and weights."""
