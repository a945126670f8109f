"""Schema, views and the faker-based generator of the seed data."""
