"""Privacy (GDPR): the data inventory, data export, erasure and retention.

``inventory`` classifies every column of every table (``records`` renders it for
docs/privacy.md); ``export`` gathers a person's data and ``bundle`` packs and signs it;
``erasure`` removes a person; ``jobs`` runs exports and scheduled erasures from a durable
queue. The person's pages are identity/accounts/privacy_views.py, the operator's commands
``identity gdpr ...`` (identity/cli/gdpr_commands.py) and the admin API's user deletion.
"""
