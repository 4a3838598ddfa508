"""Reading raw documents (with validation and quarantine) and writing deterministic Parquet."""
