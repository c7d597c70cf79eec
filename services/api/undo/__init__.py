"""Undo: reverting an agent's newest change. It sits above the services it reverts through
(agents and variants), which never import it."""
