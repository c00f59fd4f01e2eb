"""HTTP entry point (FastAPI): thin routes that call command handlers and query functions."""
