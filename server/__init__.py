"""The S²VC streaming server (installed as ``s2vc_server``): REST jobs, chunked streams, WebRTC calls, a batching
scheduler, metrics and API keys.

``create_app(settings)`` (:mod:`server.app`) builds the FastAPI app; ``s2vc serve`` (:mod:`server.cli`) runs it
with uvicorn. The message formats of streams and calls (:mod:`s2vc.transport`) live in the codec package, shared
with the clients. Domain code raises the refusals of :mod:`server.errors`; :mod:`server.http_errors` alone turns
them into status codes.
"""
