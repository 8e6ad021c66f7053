"""The programme's model: the roster, workflows and their steps, when occurrences happen,
events, and what a digest shows."""
