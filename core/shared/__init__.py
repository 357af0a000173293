"""State shared across core replicas through Redis: account states, slots, load and limits."""
