"""A chat turn, as one service for the page, the API, commands and tests:

    started = await turn_start(user=..., deployment_id=..., message=...)  # refuse or prepare
    async for event in run_turn(started, stream=True): ...                # or send_turn(started)

`turn_start` admits the turn (admission.Overloaded past the cap), checks rights and input, finds
or starts the conversation and claims the idempotency key; `run_turn` calls the agent and saves
the turn's RequestLog row once, however the call ends.
"""

from agents.turns.admission import Overloaded
from agents.turns.call import STOPPED, TurnDone, TurnInProgress, run_turn, send_turn, sse
from agents.turns.start import NotAuthenticated, StartedTurn, turn_start

__all__ = [
    "STOPPED",
    "NotAuthenticated",
    "Overloaded",
    "StartedTurn",
    "TurnDone",
    "TurnInProgress",
    "run_turn",
    "send_turn",
    "sse",
    "turn_start",
]
