"""Side-by-side benchmark: direct upstream vs a bare passthrough vs the gateway (``make bench``)."""
