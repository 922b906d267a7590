"""The deck from a terminal: ``ollama-deck pull``, ``attach``, ``ps``, ``logs``, ``cancel``,
``ls``, ``rm`` and ``update``, on the Python client (``ollama_deck.client``).

``commands`` holds the click commands (``cli.py`` attaches them to the ``ollama-deck``
group), ``follow`` follows operations to their end, ``display`` draws them (a live block on
a terminal, plain lines for a pipe or a log file, NDJSON), and ``text`` formats figures.
"""
