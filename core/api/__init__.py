"""Protocol-buffer and gRPC interfaces for plugins that live in another process.

Each ``.proto`` file here is part of the public contract; the ``*_pb2.py`` and
``*_pb2_grpc.py`` modules beside it are generated from it (see ``core/api/README.md`` for the
exact, reproducible command) and committed so that installing pilothouse needs no protoc.
"""
