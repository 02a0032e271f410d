"""The HTTP app's routers, one per concern; `hub.app` includes them."""
