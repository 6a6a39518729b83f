"""Generating an assistant reply, independent of any socket.

A generation is an asyncio task of the server process. It reads the provider's
stream through the metering service (which picks the deployment, falls back before
the first content, and settles, stores and logs the completion at the end), publishes
the new text to the conversation's channel-layer group each time its reader pauses (pieces that arrived together go out
as one delta), saves the text so far at most once per ``STREAM_SAVE_INTERVAL``, and
always ends the message in a terminal state.

Each running generation listens on a channel of its own (joined to the group
``generation_group(message_id)``) for two requests from any process: ``stop``, and
``sync``, which answers a newly connected socket with the text published so far.

Events (``core.events``) published to the conversation's group: ``chat.turn`` (new
messages), ``chat.delta`` (text and where it starts in the reply), ``chat.blocks`` (the
reply so far as its finished Markdown blocks, rendered, and the open tail as text),
``chat.snapshot`` (the text so far), ``chat.listening`` (its generation answers sync requests now:
a socket that asked before asks again), ``chat.done`` (final state), ``chat.branch`` (the current path
changed: a version chosen, an edit, a branch deleted), ``chat.continue`` (a reply streams again).

A channel-layer outage (Redis restarting) never changes how a reply ends: deltas are
retried until they go out, the control listener rejoins its group and the sockets
that came back ask it again for the text so far, and the end is saved whether or not it
could be announced. A database outage holds the unsaved text until it can be saved.
"""
