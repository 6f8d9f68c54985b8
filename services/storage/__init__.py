"""Storage: re-hosts provider results into the object store, probes them, completes jobs."""
