"""The recsys gRPC services: feature, model and gateway."""
