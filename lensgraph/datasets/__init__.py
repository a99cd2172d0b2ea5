"""Datasets read from the assets folder (``$LENSGRAPH_ASSETS``); numpy only."""
