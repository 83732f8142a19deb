"""The knowledge base: cited, versioned sources with review dates; graph and retrieval."""
