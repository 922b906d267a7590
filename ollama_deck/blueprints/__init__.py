"""HTTP only: parse, validate, call a service, shape JSON."""
