"""The back-channel endpoints under /oauth/ (token, introspection, revocation, PAR, device
authorization) and the Authlib grants and endpoints behind them."""
