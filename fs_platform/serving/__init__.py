"""The online serving API (FastAPI): features from the Redis online store over HTTP."""

from fs_platform.serving.app import create_app

__all__ = ["create_app"]
