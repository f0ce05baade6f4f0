"""Reading, splitting and generating MovieLens-format rating data."""
