"""Clients: the client store and cache, their metadata, authentication and dynamic registration."""
