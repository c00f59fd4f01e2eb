"""Read side: read-model handlers and query functions."""
