"""The model: loading a Hugging Face causal LM (`runtime`) and its chat template (`chat_format`)."""
