"""python-future's ``utils`` flags, on Python 3."""

PY2 = False
PY3 = True
