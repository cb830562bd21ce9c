"""Registration, email verification, sign-in, sign-out and password management."""
