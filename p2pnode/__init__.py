"""p2pnode."""
