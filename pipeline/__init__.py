"""katib-digits: everything that drives Experiments, one role per package.

katib/ (Katib's semantics) <- lint/ <- local/ and cluster/ <- submission/ <- serving/ <- workflow/ <- cli/
Imports run only that way (tests/project/test_architecture.py checks it); docs/architecture.md has the picture.
"""
