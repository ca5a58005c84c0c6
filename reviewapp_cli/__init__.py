"""`reviewapp`, the command line of the Review App: it drives a server over its REST API with
a token (REVIEWAPP_URL, REVIEWAPP_TOKEN), so a CI job on another machine can upload datasets,
run batches and evaluations, and fail the build when metrics drop. It imports nothing of the
server's code."""
