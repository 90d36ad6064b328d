"""The review page (``cellsift review``): a Starlette app, its static HTML/JS/CSS, and uvicorn.

starlette and uvicorn are imported inside functions, so importing the CLI stays cheap.
"""

from cellsift.cli.web.server import LOOPBACK_HOSTS, build_app, is_loopback, serve

__all__ = ["LOOPBACK_HOSTS", "build_app", "is_loopback", "serve"]
