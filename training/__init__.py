"""Thin FSDP2 trainer over stage shards. Never imports pyspark."""
