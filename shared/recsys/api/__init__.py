"""Generated gRPC and protobuf code for protos/ (see protos/run_codegen.py)."""
