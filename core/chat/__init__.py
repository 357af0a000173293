"""What happens to one chat: model choice (catalog, aliases, resolve) and shaping the answer."""
