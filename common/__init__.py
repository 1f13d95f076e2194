"""The little the three families share: conv building blocks, data loading and run helpers."""
