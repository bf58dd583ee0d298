"""The pure planner: observed snapshot in, plan of actions out.

Nothing in this package performs I/O, reads the clock or draws random numbers;
it imports only the standard library and attrs.
"""
