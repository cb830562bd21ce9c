"""OAuth 2.0 and OpenID Connect: the authorization server, its endpoints and its services."""
