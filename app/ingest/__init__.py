"""Ingest: failed payments from the gateways (fetched and pushed) become customers, transactions and cases."""
