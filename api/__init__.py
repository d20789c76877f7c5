"""HTTP only: the Sanic app, one blueprint per domain, guards and error mapping."""
