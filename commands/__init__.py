"""Command handlers: load an aggregate, ask the domain for a decision, append the events."""
