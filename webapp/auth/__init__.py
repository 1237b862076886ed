"""Authentication: access-token verification (jwt), minting (tokens), sign-in backends, guards and web sessions."""
