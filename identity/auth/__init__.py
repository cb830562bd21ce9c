"""Authentication steps: the methods a person can sign in with, second factors, and the
pending-authentication record that holds a sign-in until every required step is done.

Services only (a session and plain values in, rows out); the pages are in
``identity.accounts.factors``.
"""
