"""The versioned artifact store (the only code that knows paths), artifact schemas, blobs, the DuckDB catalog."""
