"""Per-document scorers behind one interface, run together in the curation job's single
Arrow pass (see `registry.py`)."""
