"""What the three gRPC services share: configuration, error mapping, server bootstrap,
upstream channels."""
