"""The feature store as data: the Redis key layout and codecs, the atomic per-user write
script with its pure computation, and the bulk loader. The feature service and the CLI both
use it; it never imports a service."""
