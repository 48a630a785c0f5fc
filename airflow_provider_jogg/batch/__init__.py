"""Lip sync of many clips in one task: the manifest, the ledger, the phases of a batch."""
