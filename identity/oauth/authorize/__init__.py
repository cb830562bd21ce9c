"""The authorization endpoint: /authorize, its checks, request objects, consent."""
