"""The device authorization grant (RFC 8628): the grant and the /device pages."""
