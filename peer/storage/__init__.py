"""Local chunk storage of one peer."""
