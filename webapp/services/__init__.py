"""The rules, no Flask: routing, credits, gateway, keys, settings, usage, quote."""
