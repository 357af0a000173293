"""`make bench`: the gateway's overhead against the upstream itself (see bench/README.md)."""
