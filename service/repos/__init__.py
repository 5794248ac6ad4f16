"""Data access: small functions with keyword-only arguments and a Session passed in.

They flush but never commit (the caller owns the transaction: a route commits, a worker uses
service.db.session.session_scope()). They return rows or None and raise the domain errors in
service.repos.errors, never HTTP errors.
"""
