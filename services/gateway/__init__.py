"""Gateway: the public API; assembles the full predict flow from the feature and model services."""
