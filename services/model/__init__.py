"""Model service: holds the Keras recommender of one version; answers Predict and SimilarItems."""
