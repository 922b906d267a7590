"""Logic of Ollama Deck: no Flask request objects in here."""
