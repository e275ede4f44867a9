"""HTTP serving of a Predictor: a FastAPI app with micro-batching, metrics and a web page."""

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (image uploads)
    import uvicorn  # noqa: F401
except ImportError as exc:  # the optional "serve" extra is not installed
    from tagnet.errors import ConfigError

    raise ConfigError(f"serving needs fastapi, uvicorn and python-multipart ({exc}); "
                      "expected them installed: pip install 'tagnet[serve]'") from exc

from tagnet.serve.app import create_app, run_server

__all__ = ["create_app", "run_server"]
