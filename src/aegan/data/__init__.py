"""Data: the sources `prepare` reads (sources.py, arrays.py) and the packed file every stage reads (packed.py)."""
