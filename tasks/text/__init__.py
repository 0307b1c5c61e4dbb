"""Text problems: span corruption, the synthetic corpora, local text files, agreement, downstream text-to-text tasks."""
