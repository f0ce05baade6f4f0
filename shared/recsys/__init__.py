"""recsys: the linear-autoencoder collaborative filter of "Building a Recommender System,
Part 2", trained on MovieLens and served as gRPC microservices."""

__version__ = "0.1.0"
