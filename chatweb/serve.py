"""Daphne on uvloop: ``python -m chatweb.serve`` takes Daphne's own arguments.

Daphne makes Twisted's event loop with ``asyncio.new_event_loop()`` when it is first
imported; with uvloop's policy installed before that, the loop is uvloop's, which
costs the server less CPU per socket event (bench/RESULTS.md). Daphne itself, its
arguments and its protocol handling are unchanged.
"""

import asyncio
import sys


def loop_install() -> None:
    """Make new event loops uvloop's; must run before anything imports ``daphne.server``."""
    import uvloop

    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before uvloop: its loop is already asyncio's")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    loop_install()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
