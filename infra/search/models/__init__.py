"""Model files shipped with the package (the MiniLM tokenizer); data, no code."""
