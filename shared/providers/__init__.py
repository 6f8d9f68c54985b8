"""Provider port, error taxonomy, model catalog and the real provider adapters."""
