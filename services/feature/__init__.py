"""The feature service: normalization, users' ratings and preferences, and the catalog, in Redis."""
