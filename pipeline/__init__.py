"""Safe City video analytics: camera streams in, incidents out to the ICCC."""

__version__ = "0.1.0"
