"""The S²VC streaming server: REST jobs, chunked streams, a batching scheduler, metrics and API keys.

``create_app(settings)`` (:mod:`server.app`) builds the FastAPI app; ``s2vc serve`` (:mod:`server.cli`) runs it
with uvicorn. This package's ``__init__`` imports nothing, so :mod:`server.wire` stays light for clients.
"""
