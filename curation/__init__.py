"""Spark curation engine: read, validate, filter, deduplicate, score and label raw documents."""
