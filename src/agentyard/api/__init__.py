"""HTTP: the FastAPI app, one router per resource, wire views, auth, SSE, error mapping."""
