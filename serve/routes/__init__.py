"""Every router of the API, in the order they appear in the OpenAPI document."""
from serve.routes import health

ROUTERS = [health.router]
