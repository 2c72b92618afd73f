"""The S²VC streaming server: REST jobs, chunked streams, a batching scheduler, metrics and API keys.

``create_app(settings)`` (:mod:`server.app`) builds the FastAPI app; ``s2vc serve`` (:mod:`server.cli`) runs it
with uvicorn. The wire format of streams (:mod:`s2vc.transport.streams`) lives in the codec package, shared with clients.
"""
