"""Ratings and their delivery to feedback sinks arrive with the rating issue."""
