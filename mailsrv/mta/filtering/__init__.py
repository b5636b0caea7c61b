"""Mail hygiene: the checks a message meets at the SMTP stages, run as one pipeline.

`pipeline.py` holds the seam (a `Check` with one hook per stage, the `Pipeline` that runs them in
order, the `Findings` of the DATA stage); each check is a module of its own beside it, built by the
wiring with its collaborators and handed to the `Intake` in the pipeline's order.
"""
