"""The `sharpen` command line and the end-to-end demo that ties the three stages together."""
