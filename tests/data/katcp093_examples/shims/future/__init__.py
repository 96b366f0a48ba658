"""Minimal stand-in for python-future, enough for katcp-python 0.9.3's example programs."""
