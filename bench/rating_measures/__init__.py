"""bench/ratings.py's measurements (see its docstring): the rating POST under load (post_load),
one POST and one forwarding batch taken apart in this process (in_process), one worker's
forwarding (forwarding), and their data (setup). Each imports Django models: import them after
harness.config.configure().
"""
