"""HTTP only: FastAPI on Ray Serve. Validate with pydantic, call actors through handles,
map refusals to status codes in one place (serve/errors.py)."""
