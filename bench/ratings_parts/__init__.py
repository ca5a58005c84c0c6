"""The parts of bench/ratings.py, the ratings benchmark; see that script's docstring.

config (arguments, constants, the environment Django starts in) is imported first; every
other module but processes and stats imports Django models, so only after config.configure().
"""
