"""The search service: FastAPI app over the served index, with a web page and reverse search."""
