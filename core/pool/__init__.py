"""The Cursor accounts and picking one: the pool, routing, proxies, refresh, admission, drain."""
