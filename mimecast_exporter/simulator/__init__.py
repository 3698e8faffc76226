"""A Mimecast API stand-in: a queue model served over real HTTP, for tests and demos."""
