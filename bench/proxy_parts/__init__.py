"""The parts of bench/proxy.py, the chat proxy benchmark; see that script's docstring.

wire (the load generator's HTTP client) and machine (CPU and memory from /proc) need no Django;
setup, load and profiling import Django models: import them after ratings_parts.config.configure().
"""
