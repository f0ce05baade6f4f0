"""Request limits of the three services' APIs: one source for the servicers that enforce them,
the callers that must stay inside them (the gateway's upstream calls, the load tester) and the
API reference (docs/api.md)."""

from __future__ import annotations

MAX_MOVIE_ID = 2**31 - 1  # movie ids travel as int32 in packed vectors and stored preferences
MAX_K = 1000  # k of Recommend, SimilarItems and Predict's top_k; max_contributions of Explain
DEFAULT_CONTRIBUTIONS = 10  # Explain / ExplainPrediction's max_contributions when 0

MAX_GIVEN_MOVIES = 10_000  # PredictRatings' movie_ids, Predict's given_items
MAX_INLINE_RATINGS = 10_000  # a request's inline ratings
MAX_PREFERENCES = 20_000  # entries of one preference vector sent to the model service
MAX_RATINGS_PER_WRITE = 1000  # RateItems, DeleteRatings and the feature service's writes

MAX_USERS_PER_BATCH = 1000  # BatchGetUserFeatures' user ids
MAX_PAGE_SIZE = 1000  # ListItems' page_size
MAX_PREDICT_BATCH = 256  # rows of BatchPredict and BatchSimilarItems: COALESCE_MAX_BATCH's bound
